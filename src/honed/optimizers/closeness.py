"""How close a wrong answer came to the gold one: the tie-break when a metric cannot tell candidates apart.

Why: a race's first rung runs every candidate on a quarter of validation (5 examples of 20). Where the target
rarely answers right, every candidate scores the same there (0.00 on object_counting with the 135M target and
on five of six tasks no honed revision was designed on), and the cut then fell by list order: the first
candidates went on, whatever they had written. The answers themselves still differ: "forty-one" for
"forty-two" is nearer than "41", 12 for 13 nearer than 3. This score orders only candidates the metric ties;
it never ranks one above a candidate the metric scores higher, and selection (the sign test) uses the metric
alone. It reads nothing task-specific: numbers compare by value, anything else by characters.
"""

from __future__ import annotations

from difflib import SequenceMatcher
from typing import Any

from honed.evaluate import ExampleResult
from honed.optimizers.attribution import example_gold
from honed.programs.metrics import as_number, normalize


def value_closeness(produced: Any, gold: Any) -> float:
    """1.0 for equal values, toward 0.0 the further apart: 1 / (1 + relative distance) for two numbers,
    else the character similarity of their normalized texts (difflib's ratio)."""
    a, b = as_number(produced), as_number(gold)
    if a is not None and b is not None:
        scale = max(abs(a), abs(b), 1)
        return float(1 / (1 + abs(a - b) / scale))
    x, y = normalize(produced), normalize(gold)
    if not x or not y:
        return float(x == y)
    return SequenceMatcher(None, x, y, autojunk=False).ratio()


def answer_closeness(result: ExampleResult) -> float:
    """The mean closeness of the prediction's gold-carrying fields to the gold values; 1.0 where the metric
    gave full marks, 0.0 where nothing was predicted (an error, a parse failure) or no field is comparable."""
    if result.score >= 1.0:
        return 1.0
    if result.prediction is None:
        return 0.0
    produced = dict(result.prediction.items())
    gold = {k: v for k, v in example_gold(result.example).items() if k in produced}
    if not gold:
        return 0.0
    return sum(value_closeness(produced[k], v) for k, v in gold.items()) / len(gold)
