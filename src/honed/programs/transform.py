"""A one-step text transformation program (input text -> output text)."""

from __future__ import annotations

import dspy

from honed.signatures import transformation_signature


class Transform(dspy.Module):
    """Rewrite an input into an output. Its one predictor is named `predict`.

    >>> program = Transform(input_field="word", output_field="plural", instructions="Write the plural.")
    >>> program(word="mouse").plural  # doctest: +SKIP
    'mice'
    """

    def __init__(self, *, input_field: str = "text", output_field: str = "output",
                 instructions: str | None = None) -> None:
        super().__init__()
        self.init_args = {"input_field": input_field, "output_field": output_field, "instructions": instructions}
        self.predict = dspy.Predict(transformation_signature(
            input_field=input_field, output_field=output_field, instructions=instructions))

    def forward(self, **inputs: str) -> dspy.Prediction:
        return self.predict(**inputs)
