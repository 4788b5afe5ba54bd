"""A two-stage program (reason -> answer) whose intermediate output is a typed field.

It exists so that multi-predictor compilation is exercised on every task: an optimizer has to decide
which of the two predictors a failure belongs to (honed's attribution, DSPy's per-predictor search).
"""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from honed.programs.transform import typed_output_args
from honed.signatures import classification_signature, reasoning_signature, transformation_signature
from honed.signatures.tasks import OutputTypeName


class ReasonThenAnswer(dspy.Module):
    """First write a short reasoning about the input (`reason`), then answer given it (`answer`).

    With `labels` the answer is one of them (decoding cannot produce anything else); without, it is of
    `output_type` ("str", "int", "float"; a "str" at most `max_chars` long when given). The reasoning is
    at most `REASONING_MAX_CHARS` characters, so the first step always ends.

    >>> program = ReasonThenAnswer(labels=["positive", "negative"], input_field="sentence",
    ...                            output_field="sentiment")
    >>> [name for name, _ in program.named_predictors()]
    ['reason', 'answer']
    """

    def __init__(self, *, input_field: str = "text", output_field: str = "output",
                 labels: Sequence[str] | None = None, instructions: str | None = None,
                 output_type: OutputTypeName = "str", max_chars: int | None = None) -> None:
        super().__init__()
        self.init_args = {"input_field": input_field, "output_field": output_field,
                          "labels": list(labels) if labels else None, "instructions": instructions,
                          **({} if labels else typed_output_args(output_type, max_chars))}
        self.input_field = input_field
        self.reason = dspy.Predict(reasoning_signature(input_field=input_field, task=instructions))
        if labels:
            answer = classification_signature(labels, input_field=input_field, output_field=output_field,
                                              instructions=instructions)
        else:
            answer = transformation_signature(input_field=input_field, output_field=output_field,
                                              instructions=instructions, output_type=output_type,
                                              max_chars=max_chars)
        self.answer = dspy.Predict(answer.insert(1, "reasoning", dspy.InputField(), type_=str))

    @property
    def input_fields(self) -> list[str]:
        return [self.input_field]

    def forward(self, **inputs: str) -> dspy.Prediction:
        reasoning = self.reason(**inputs).reasoning
        return self.answer(**inputs, reasoning=reasoning)


class MultipleChoice(ReasonThenAnswer):
    """BIG-Bench-Hard-style multiple choice: reason about the question, then pick one of `choices`.

    Meant for capable models (a 135M model's reasoning rarely helps it). Load BBH tasks with
    `load_task("bbh/navigate", program="pipeline")` to get this shape with the task's own choices.

    >>> program = MultipleChoice(["(A)", "(B)", "(C)"])
    >>> program.answer.signature.output_fields["answer"].annotation
    typing.Literal['(A)', '(B)', '(C)']
    """

    def __init__(self, choices: Sequence[str], *, input_field: str = "question", output_field: str = "answer",
                 instructions: str | None = None) -> None:
        super().__init__(input_field=input_field, output_field=output_field, labels=choices,
                         instructions=instructions or "Answer the question with one of the options.")
        self.init_args = {"choices": list(choices), "input_field": input_field, "output_field": output_field,
                          "instructions": instructions}
