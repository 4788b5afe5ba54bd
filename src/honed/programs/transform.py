"""A one-step text transformation program (input text -> output of a declared type)."""

from __future__ import annotations

from typing import Any

import dspy

from honed.signatures import transformation_signature
from honed.signatures.tasks import OutputTypeName


def typed_output_args(output_type: OutputTypeName, max_chars: int | None) -> dict[str, Any]:
    """The `init_args` entries for an output type: only what differs from a plain `str`, so the artifact
    of an unbounded-text program is the same as before output types existed."""
    args: dict[str, Any] = {}
    if output_type != "str":
        args["output_type"] = output_type
    if max_chars is not None:
        args["max_chars"] = max_chars
    return args


class Transform(dspy.Module):
    """Rewrite an input into an output. Its one predictor is named `predict`.

    `output_type` ("str", "int" or "float") types the output; `max_chars` bounds a "str" output, so a
    small model's answer ends there (loaded tasks set both from their training answers).

    >>> program = Transform(input_field="word", output_field="plural", instructions="Write the plural.")
    >>> program(word="mouse").plural  # doctest: +SKIP
    'mice'
    """

    def __init__(self, *, input_field: str = "text", output_field: str = "output",
                 instructions: str | None = None, output_type: OutputTypeName = "str",
                 max_chars: int | None = None) -> None:
        super().__init__()
        self.init_args = {"input_field": input_field, "output_field": output_field, "instructions": instructions,
                          **typed_output_args(output_type, max_chars)}
        self.predict = dspy.Predict(transformation_signature(
            input_field=input_field, output_field=output_field, instructions=instructions,
            output_type=output_type, max_chars=max_chars))

    def forward(self, **inputs: str) -> dspy.Prediction:
        return self.predict(**inputs)
