"""The behavior optimizer's meta-signatures: draft a procedure, execute it as a reference, fix one step.

Every output is typed and length-capped, so even a small optimizer model returns something that
parses; the optimizer then checks it against the target model's behavior.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import dspy
import pydantic

from honed.modules.procedure import STEP_TEXT_LIMIT, Procedure

StepText = Annotated[str, pydantic.StringConstraints(max_length=160)]


class DraftProcedure(dspy.Signature):
    """Write a short step-by-step procedure that a small language model can follow to do this task.
    Each step is one simple action; the last step gives the answer."""

    task: str = dspy.InputField(desc="the task instruction")
    examples: str = dspy.InputField(desc="example inputs with their correct outputs")
    steps: Annotated[list[StepText], pydantic.Field(min_length=2, max_length=4)] = dspy.OutputField(
        desc="the steps, in order")


def describe_inputs(example: dspy.Example) -> str:
    """An example's inputs as the optimizer model reads them in a draft or a reference execution."""
    return "; ".join(f"{k}: {v}" for k, v in example.inputs().toDict().items())


def describe_answer(outputs: Mapping[str, Any]) -> str:
    """An answer's fields as the optimizer model reads them (the correct answer it is told)."""
    return ", ".join(f"{k}: {v}" for k, v in outputs.items())


def _carry_out(trace: Any, trace_desc: str, instructions: str) -> type[dspy.Signature]:
    """A reference execution's signature: a procedure, an input and its correct answer in; the trace out."""
    return dspy.Signature(
        {"procedure": (str, dspy.InputField(desc="the steps to follow")),
         "task_input": (str, dspy.InputField(desc="the input")),
         "correct_answer": (str, dspy.InputField(desc="the correct final answer")),
         "steps": (trace, dspy.OutputField(desc=trace_desc))},
        instructions,
    )


def reference_signature(step_count: int) -> type[dspy.Signature]:
    """Carry out a procedure of `step_count` steps on one input whose correct answer is known."""
    trace = Annotated[list[StepText], pydantic.Field(min_length=step_count, max_length=step_count)]
    return _carry_out(trace, "what each step produces for this input, leading to the answer",
                      "Carry out each step of the procedure on the input, writing what each step produces. "
                      "Your steps must lead to the correct answer.")


def keyed_reference_signature(procedure: Procedure) -> type[dspy.Signature]:
    """`reference_signature` with the trace an object keyed by step ("1. <instruction>": that step's result),
    read back with `trace_steps`. Asked for a list, the 1.5B optimizer model copied each step's wording out in
    93 of 99 step outputs over nine tasks; keyed, in 6 of 99 (`benchmarks/drafting_probe.py --trace keyed`)."""
    text = Annotated[str, pydantic.StringConstraints(max_length=STEP_TEXT_LIMIT)]
    fields: dict[str, Any] = {f"s{i}": (text, pydantic.Field(alias=f"{i}. {step.instruction[:80].strip()}"))
                              for i, step in enumerate(procedure.steps, 1)}
    trace = pydantic.create_model("StepResults", __config__=pydantic.ConfigDict(populate_by_name=True), **fields)
    return _carry_out(trace, "each step's result for this input, leading to the answer",
                      "Carry out each step of the procedure on the input, writing each step's result (what it "
                      "produced), not the step's wording. Your steps must lead to the correct answer.")


def carry_out_signature(procedure: Procedure, keyed: bool = False) -> type[dspy.Signature]:
    """The reference execution's signature for `procedure`: its trace a list, or keyed by step."""
    return keyed_reference_signature(procedure) if keyed else reference_signature(len(procedure.steps))


def trace_steps(trace: Any, procedure: Procedure, keyed: bool = False) -> list[str]:
    """A reference execution's step outputs, in step order, whichever form (`carry_out_signature`) it took."""
    if keyed:
        return [str(getattr(trace, f"s{i}")) for i in range(1, len(procedure.steps) + 1)]
    return [str(step) for step in trace]


class FixStep(dspy.Signature):
    """A model following this procedure went wrong at one step. Change only that step so that a model
    following it produces what the step should produce."""

    procedure: str = dspy.InputField(desc="the whole procedure")
    step: str = dspy.InputField(desc="the step where the model went wrong")
    model_did: str = dspy.InputField(desc="what the model produced at that step")
    should_produce: str = dspy.InputField(desc="what that step should have produced")
    action: Literal["rewrite", "split", "add_check"] = dspy.OutputField(
        desc="rewrite the step, split it into two, or add a check before it")
    new_step: StepText = dspy.OutputField(desc="the rewritten step (the first of two when splitting, the check "
                                               "when adding one)")
    second_step: StepText = dspy.OutputField(desc="the second step when splitting; empty otherwise")
