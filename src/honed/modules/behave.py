"""`Behave`: a `dspy.Predict` that follows a procedure and reports what it did at each step.

The step trace is a typed output field (`steps`, a list with one short string per step) placed
before the task's own outputs, so on `gguf/` models the grammar makes the model write each step
first and then the answer, and the trace always parses. Without a procedure it is a plain Predict.
"""

from __future__ import annotations

from typing import Annotated, Any

import dspy
import pydantic

from honed.modules.procedure import STEP_TEXT_LIMIT, Procedure

STEPS_FIELD = "steps"
ANSWER_TOKENS = 160


def behavior_signature(task_signature: type[dspy.Signature], procedure: Procedure | None) -> type[dspy.Signature]:
    """The task signature, told to follow `procedure`, with a typed step trace before its outputs."""
    if procedure is None:
        return task_signature
    if STEPS_FIELD in task_signature.fields:
        raise ValueError(f"a Behave signature cannot have its own `{STEPS_FIELD}` field")
    count = len(procedure.steps)
    step_text = Annotated[str, pydantic.StringConstraints(max_length=STEP_TEXT_LIMIT)]
    trace_type = Annotated[list[step_text], pydantic.Field(min_length=count, max_length=count)]
    instructions = f"{task_signature.instructions.strip()}\n\n{procedure.render()}"
    extended = task_signature.insert(0, STEPS_FIELD, dspy.OutputField(desc="what you produced at each step"),
                                     type_=trace_type)
    return extended.with_instructions(instructions)


class Behave(dspy.Predict):
    """Run `signature` under `procedure`; predictions carry `.steps` (one entry per step) and the outputs.

    >>> sig = dspy.Signature("sentence -> sentiment")
    >>> step = Procedure.from_texts(["Find the opinion words.", "Decide if they are positive or negative."])
    >>> Behave(sig, step).signature.output_fields.keys()  # doctest: +SKIP
    dict_keys(['steps', 'sentiment'])
    """

    def __init__(self, signature: str | type[dspy.Signature], procedure: Procedure | None = None,
                 **config: Any) -> None:
        task = dspy.ensure_signature(signature)
        super().__init__(behavior_signature(task, procedure), **config)
        self.task_signature = task
        self._own_max_tokens = "max_tokens" in config
        self.set_procedure(procedure)

    def set_procedure(self, procedure: Procedure | None) -> None:
        self.procedure = procedure
        self.signature = behavior_signature(self.task_signature, procedure)
        if not self._own_max_tokens:
            # A small model told to write steps may keep writing in a free-text answer field: cap the
            # call at what the steps (each at most STEP_TEXT_LIMIT characters) plus a short answer need.
            if procedure is None:
                self.config.pop("max_tokens", None)
            else:
                self.config["max_tokens"] = len(procedure.steps) * (STEP_TEXT_LIMIT // 3) + ANSWER_TOKENS

    def set_task_instructions(self, instructions: str) -> None:
        self.task_signature = self.task_signature.with_instructions(instructions)
        self.signature = behavior_signature(self.task_signature, self.procedure)

    def dump_procedure(self) -> dict[str, Any] | None:
        return None if self.procedure is None else self.procedure.model_dump(mode="json")
