"""Metrics for bundled and user tasks. The default: exact match after normalization, any accepted answer.

Gold answers are text (that is how task files hold them), while a typed program predicts an `int` or a
`float`. A number is compared with a gold answer *as a number* (`5` matches "5", `2.0` matches "2" and
"2.00"), never through text normalization, which would strip the sign and make `-3` match "3".
"""

from __future__ import annotations

import re
import string
from decimal import Decimal, InvalidOperation
from typing import Any

_PUNCT = re.escape(string.punctuation)
_EDGE_PUNCT = re.compile(rf"^[\s{_PUNCT}]+|[\s{_PUNCT}]+$")
_SPACES = re.compile(r"\s+")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def normalize(text: Any) -> str:
    """Lower-case, collapse inner whitespace, strip surrounding whitespace and punctuation."""
    value = "" if text is None else str(text)
    return _EDGE_PUNCT.sub("", _SPACES.sub(" ", value.lower()))


def as_number(value: Any) -> Decimal | None:
    """`value` as an exact decimal when it is a number or a numeric text ("12", " -3 ", "2.50"), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        text = value.strip()
    else:
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def matches(predicted: Any, gold: Any) -> bool:
    """Whether a predicted value answers `gold`: numerically for a predicted number, else as normalized text."""
    if isinstance(predicted, int | float) and not isinstance(predicted, bool):
        number, expected = as_number(predicted), as_number(gold)
        if number is not None and expected is not None:
            return number == expected
    return normalize(predicted) == normalize(gold)


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
        got = getattr(prediction, self.field, None) if prediction is not None else None
        return float(any(matches(got, answer) for answer in self.accepted(example)))

    def __repr__(self) -> str:
        return f"ExactMatch({self.field!r})"
