"""Which training examples a few-shot candidate shows: seeded draws, half of them chosen for coverage.

Why coverage: a small target copies the form of what it is shown. In the paper's setting MIPROv2's best
active_to_passive program showed four examples, two with a singular and two with a plural subject ("was" /
"were"), and scored 0.83 on test, while random draws of four scored 0.65-0.68. Picking each next example as
far as possible, in gold-answer words, from those already picked (farthest-point selection) shows the
variety of answers a task has, whatever the task; it needs no model call and no task-specific rule.
Random draws of a larger size stay beside it, as LabeledFewShot would build them, and validation decides.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping

import dspy

from honed.optimizers.attribution import example_gold

_WORD = re.compile(r"\w+")


def answer_words(example: dspy.Example) -> frozenset[str]:
    """The words of an example's gold answer (every gold field), lower-cased."""
    text = " ".join(str(v) for v in example_gold(example).values())
    return frozenset(_WORD.findall(text.lower()))


def _distance(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return 1.0 - len(a & b) / len(union) if union else 0.0


def diverse_draw(examples: Mapping[str, dspy.Example], k: int, key: str) -> tuple[str, ...]:
    """`k` example ids: a seeded first pick, then each next the one farthest from those picked (ties: the
    earlier id), so that the answers shown differ as much as the training set allows."""
    ids = list(examples)
    if k >= len(ids):
        return tuple(ids)
    words = {i: answer_words(examples[i]) for i in ids}
    chosen = [random.Random(key).choice(ids)]
    nearest = {i: _distance(words[i], words[chosen[0]]) for i in ids}
    while len(chosen) < k:
        pick = max((i for i in ids if i not in chosen), key=lambda i: nearest[i])
        chosen.append(pick)
        for i in ids:
            nearest[i] = min(nearest[i], _distance(words[i], words[pick]))
    return tuple(chosen)


def random_draw(examples: Mapping[str, dspy.Example], k: int, key: str) -> tuple[str, ...]:
    """`k` example ids drawn at random (seeded by `key`)."""
    ids = list(examples)
    return tuple(random.Random(key).sample(ids, min(k, len(ids))))


def few_shot_draws(examples: Mapping[str, dspy.Example], count: int, k: int, seed: int
                   ) -> list[tuple[str, tuple[str, ...]]]:
    """`count` demonstration sets as (name, ids): even draws chosen for coverage (`k` examples), odd ones
    at random and four times larger (DSPy's LabeledFewShot shows 16)."""
    draws = []
    for i in range(count):
        key = f"labeled:{seed}:{i}"
        if i % 2 == 0:
            draws.append((f"few-shot-{i}", diverse_draw(examples, k, key)))
        else:
            draws.append((f"few-shot-{i}", random_draw(examples, 4 * k, key)))
    return draws


def _gold_text(example: dspy.Example) -> str:
    return " ".join(str(v) for v in example_gold(example).values()).strip().lower()


def copied_from(example: dspy.Example) -> str | None:
    """Where in which input field the gold answer is copied from ("copy:<field>:first" or "...:second"
    half), or None when no input contains it."""
    gold = _gold_text(example)
    for field, value in example.inputs().toDict().items():
        text = str(value).lower()
        at = text.find(gold) if gold else -1
        if at >= 0 and len(gold) < len(text):
            return f"copy:{field}:{'first' if at + len(gold) / 2 < len(text) / 2 else 'second'}"
    return None


def answer_forms(examples: list[dspy.Example]) -> list[str]:
    """What kind of answer each example has, in terms any task has: its label where the answers are a
    label set (at most a third as many distinct answers as examples), else where in which input field the
    answer is copied from, else "other". Why: a sample that over-represents one form (larger_animal's
    validation: 15 of 20 answers are the second animal named) rewards a candidate that always gives that
    form; sampling by form avoids it."""
    golds = [_gold_text(e) for e in examples]
    if len(set(golds)) <= max(2, len(examples) // 3):
        return golds
    return [copied_from(e) or "other" for e in examples]


def in_turn_by_form(examples: list[dspy.Example], among: list[dspy.Example], *, picks: int) -> list[dspy.Example]:
    """`among` reordered so that answer forms (`answer_forms` over `examples`, the whole training set)
    take turns, the form most frequent in `among` first; within a form, in `among`'s order. Its first
    `picks` cover the forms as evenly as `among` allows. When the training set has more forms than
    `picks` (a label per letter, a number per count), no `picks` examples can cover them and turns would
    only reorder at random: `among` is returned as it is."""
    forms = answer_forms(examples)
    if len(set(forms)) > picks:
        return list(among)
    form_of = dict(zip(map(id, examples), forms, strict=True))
    queues: dict[str, list[dspy.Example]] = {}
    for e in among:
        queues.setdefault(form_of.get(id(e), "other"), []).append(e)
    order = sorted(queues, key=lambda f: (-len(queues[f]), f))
    turns: list[dspy.Example] = []
    while any(queues.values()):
        for form in order:
            if queues[form]:
                turns.append(queues[form].pop(0))
    return turns


def balanced_sample(examples: list[dspy.Example], k: int, among: list[dspy.Example]) -> list[dspy.Example]:
    """`k` examples of `among`, as many of each answer form as `among` allows (`in_turn_by_form`), the
    last ones of each form (the split is already shuffled by the seed), in `among`'s order. Balanced rather
    than proportional: a training split of 100 is itself skewed (larger_animal's: 56 answers second), and a
    candidate that trades one form for another should not pass on the skew."""
    chosen = {id(e) for e in in_turn_by_form(examples, list(reversed(among)), picks=k)[:k]}
    return [e for e in among if id(e) in chosen]
