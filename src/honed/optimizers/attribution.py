"""Which predictor of a multi-step program is to blame for a failed example.

The first predictor (in the order the program ran them) whose output differs from a gold value the
example carries for that field is blamed. If the run broke off (a parse failure or error), the first
predictor that never produced output is blamed. Otherwise the last predictor that ran, whose output is
the program's answer, is blamed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from honed.evaluate import ExampleResult
from honed.programs.metrics import matches

NOT_GOLD = frozenset({"id", "answers"})


def example_gold(example: Any) -> dict[str, object]:
    """The gold values an example carries (its labels, less the id and the alternative answers)."""
    return {k: v for k, v in example.labels().items() if k not in NOT_GOLD}


def gold_labels(result: ExampleResult) -> dict[str, object]:
    return example_gold(result.example)


def attribute(result: ExampleResult, predictor_order: Sequence[str]) -> str:
    """The name of the predictor whose behavior first diverges on this failed example."""
    gold = gold_labels(result)
    for step in result.trace:
        for field, value in step.outputs.items():
            if field in gold and not matches(value, gold[field]):
                return step.predictor
    if result.prediction is None:
        traced = {step.predictor for step in result.trace}
        for name in predictor_order:
            if name not in traced:
                return name
    if result.trace:
        return result.trace[-1].predictor
    return predictor_order[-1]
