"""Metrics for bundled and user tasks. The default: exact match after normalization, any accepted answer."""

from __future__ import annotations

import re
import string
from typing import Any

_PUNCT = re.escape(string.punctuation)
_EDGE_PUNCT = re.compile(rf"^[\s{_PUNCT}]+|[\s{_PUNCT}]+$")
_SPACES = re.compile(r"\s+")


def normalize(text: Any) -> str:
    """Lower-case, collapse inner whitespace, strip surrounding whitespace and punctuation."""
    value = "" if text is None else str(text)
    return _EDGE_PUNCT.sub("", _SPACES.sub(" ", value.lower()))


class ExactMatch:
    """`metric(example, prediction, trace=None) -> float` for one output field.

    Accepts any of `example.answers` when the example carries them, else the field's gold value.
    """

    name = "exact_match"

    def __init__(self, field: str) -> None:
        self.field = field

    def accepted(self, example: Any) -> list[str]:
        answers = example.get("answers") if hasattr(example, "get") else None
        return list(answers) if answers else [example[self.field]]

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        got = normalize(getattr(prediction, self.field, None) if prediction is not None else None)
        return float(any(got == normalize(answer) for answer in self.accepted(example)))

    def __repr__(self) -> str:
        return f"ExactMatch({self.field!r})"
