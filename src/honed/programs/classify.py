"""A one-step classification program: the simplest thing an optimizer can compile."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from honed.signatures import classification_signature


class Classify(dspy.Module):
    """Pick one of `labels` for an input text. Its one predictor is named `predict`.

    >>> program = Classify(["positive", "negative"], input_field="sentence", output_field="sentiment")
    >>> program(sentence="A delight from start to finish.").sentiment  # doctest: +SKIP
    'positive'
    """

    def __init__(self, labels: Sequence[str], *, input_field: str = "text", output_field: str = "label",
                 instructions: str | None = None) -> None:
        super().__init__()
        self.init_args = {"labels": list(labels), "input_field": input_field, "output_field": output_field,
                          "instructions": instructions}
        self.predict = dspy.Predict(classification_signature(
            labels, input_field=input_field, output_field=output_field, instructions=instructions))

    def forward(self, **inputs: str) -> dspy.Prediction:
        return self.predict(**inputs)
