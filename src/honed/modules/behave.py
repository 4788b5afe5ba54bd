"""`Behave`: a `dspy.Predict` that follows a procedure and reports what it did at each step.

The step trace is a typed output field (`steps`) placed before the task's own outputs, so on `gguf/` models
the grammar makes the model write each step first and then the answer, and the trace always parses. The
model writes it as an object keyed by each step's number and instruction (`{"1. List the objects": "a
piano, two lamps", ...}`); a prediction carries it as a list, one result per step. Why keyed: written as a
plain list, the trace was the procedure copied out. In the paper's setting every worked demonstration of
object_counting's drafted procedure restated all of its steps ("Read the question carefully", ...), for the
teacher and for the reference execution alike, so the demonstrations showed no work; with each step's
instruction already written as its key, the optimizer model wrote the objects it counted. Without a
procedure it is a plain Predict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import dspy
import pydantic

from honed.modules.procedure import STEP_TEXT_LIMIT, Procedure

STEPS_FIELD = "steps"
ANSWER_TOKENS = 160
KEY_LIMIT = 80  # characters of a step's instruction in its trace key: enough to say which step it is


def step_keys(procedure: Procedure) -> list[str]:
    """The trace's keys: each step's number and (the start of) its instruction, e.g. "1. List the objects"."""
    return [f"{number}. {step.instruction[:KEY_LIMIT].strip()}" for number, step in enumerate(procedure.steps, 1)]


class StepResults(pydantic.BaseModel):
    """Base of a procedure's trace type: one string field per step, written under the step's key."""

    model_config = pydantic.ConfigDict(populate_by_name=True, extra="forbid")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _from_list(cls, value: Any) -> Any:
        """A trace written as a list (a provider that does not enforce the schema, a demonstration stored as
        a list) is read in step order."""
        if isinstance(value, Sequence) and not isinstance(value, str):
            return dict(zip(cls.model_fields, (str(v) for v in value), strict=False))
        return value

    def as_list(self) -> list[str]:
        return [getattr(self, name) for name in type(self).model_fields]


def trace_type(procedure: Procedure) -> type[StepResults]:
    """The pydantic type of `procedure`'s step trace: fields s1..sN under the keys `step_keys` names."""
    step_text = Annotated[str, pydantic.StringConstraints(max_length=STEP_TEXT_LIMIT)]
    fields: dict[str, Any] = {f"s{i}": (step_text, pydantic.Field(alias=key))
                              for i, key in enumerate(step_keys(procedure), 1)}
    return pydantic.create_model("StepResults", __base__=StepResults, **fields)


def trace_tokens(procedure: Procedure) -> int:
    """Tokens a trace of `procedure` may need: each key (the model writes it too) and a full step result, at
    roughly a token per 3 characters."""
    return sum(len(key) // 3 + STEP_TEXT_LIMIT // 3 for key in step_keys(procedure))


def trace_list(value: Any) -> list[str] | None:
    """A step trace as a list of step results, whichever form it came in (None stays None)."""
    if value is None:
        return None
    if isinstance(value, StepResults):
        return value.as_list()
    if isinstance(value, Mapping):
        return [str(v) for v in value.values()]
    return [str(v) for v in value]


def behavior_signature(task_signature: type[dspy.Signature], procedure: Procedure | None) -> type[dspy.Signature]:
    """The task signature, told to follow `procedure`, with a typed step trace before its outputs."""
    if procedure is None:
        return task_signature
    if STEPS_FIELD in task_signature.fields:
        raise ValueError(f"a Behave signature cannot have its own `{STEPS_FIELD}` field")
    instructions = f"{task_signature.instructions.strip()}\n\n{procedure.render()}"
    extended = task_signature.insert(0, STEPS_FIELD, dspy.OutputField(desc="each step's result for this input"),
                                     type_=trace_type(procedure))
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
                self.config["max_tokens"] = trace_tokens(procedure) + ANSWER_TOKENS

    def forward(self, **kwargs: Any) -> dspy.Prediction:
        """Predict; the demonstrations' step lists are shown keyed like the trace the model writes, and the
        prediction's trace comes back as a list."""
        if self.procedure is None:
            return super().forward(**kwargs)
        keys = step_keys(self.procedure)
        demos = kwargs.pop("demos", None)
        kwargs["demos"] = [self._keyed(demo, keys) for demo in (self.demos if demos is None else demos)]
        prediction = super().forward(**kwargs)
        if STEPS_FIELD in prediction:
            prediction[STEPS_FIELD] = trace_list(prediction[STEPS_FIELD])
        return prediction

    @staticmethod
    def _keyed(demo: Any, keys: list[str]) -> Any:
        steps = demo.get(STEPS_FIELD) if hasattr(demo, "get") else None
        if steps is None or isinstance(steps, Mapping):
            return demo
        keyed = dict(zip(keys, (str(s) for s in steps), strict=False))
        return demo.copy(**{STEPS_FIELD: keyed}) if isinstance(demo, dspy.Example) else {**demo, STEPS_FIELD: keyed}

    def set_task_instructions(self, instructions: str) -> None:
        self.task_signature = self.task_signature.with_instructions(instructions)
        self.signature = behavior_signature(self.task_signature, self.procedure)

    def dump_procedure(self) -> dict[str, Any] | None:
        return None if self.procedure is None else self.procedure.model_dump(mode="json")
