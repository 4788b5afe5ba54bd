"""The behavior optimizer's meta-signatures: draft a procedure, execute it as a reference, fix one step.

Every output is typed and length-capped, so even a small optimizer model returns something that
parses; the optimizer then checks it against the target model's behavior.
"""

from __future__ import annotations

from typing import Annotated, Literal

import dspy
import pydantic

StepText = Annotated[str, pydantic.StringConstraints(max_length=160)]


class DraftProcedure(dspy.Signature):
    """Write a short step-by-step procedure that a small language model can follow to do this task.
    Each step is one simple action; the last step gives the answer."""

    task: str = dspy.InputField(desc="the task instruction")
    examples: str = dspy.InputField(desc="example inputs with their correct outputs")
    steps: Annotated[list[StepText], pydantic.Field(min_length=2, max_length=4)] = dspy.OutputField(
        desc="the steps, in order")


def reference_signature(step_count: int) -> type[dspy.Signature]:
    """Carry out a procedure of `step_count` steps on one input whose correct answer is known."""
    trace = Annotated[list[StepText], pydantic.Field(min_length=step_count, max_length=step_count)]
    return dspy.Signature(
        {"procedure": (str, dspy.InputField(desc="the steps to follow")),
         "task_input": (str, dspy.InputField(desc="the input")),
         "correct_answer": (str, dspy.InputField(desc="the correct final answer")),
         "steps": (trace, dspy.OutputField(desc="what each step produces for this input, leading to the answer"))},
        "Carry out each step of the procedure on the input, writing what each step produces. "
        "Your steps must lead to the correct answer.",
    )


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
