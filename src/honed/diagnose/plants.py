"""Plant a known cause of error into a task, so that an optimizer's reflections can be checked against it.

Each plant turns a `Task` into a new `Task` (deterministic for a seed) and a `Plant` record saying what
was planted and which words name it:

- `hidden_rule`: every example whose input contains a trigger word gets one fixed label. The word is a
  content word in 10-30% of training inputs (5-40% when no word falls in that band, as in the bundled
  sentiment task, whose commonest content words are in ~7%); for a classification task the label is the
  one the rule contradicts most often, so the rule, not the task, explains the errors. Tasks with one-word
  inputs have no such word and raise `PlantError`.
- `format`: every gold output is written in UPPER CASE (or, where case cannot show, wrapped in square
  brackets), which the seed instruction never says. The program becomes a free-text `Transform` scored
  case- and punctuation-sensitively, so the model can comply and the metric can tell.
- `distractor`: seeded label noise on ~22% of training examples. There is no cause to find; a decoy word,
  chosen exactly as `hidden_rule` would choose its trigger but never used, measures false identification.

The training split (the pool `honed.compiling.task_splits` draws training *and* validation examples
from) always carries the plant. The rules (`hidden_rule`, `format`) are also applied to the test split,
so the planted task is a consistent task of its own; noise is not a rule, so `distractor` leaves the test
split clean.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Literal

import dspy
from pydantic import BaseModel, Field

from honed.diagnose.words import choose_trigger, contains_word, words_of
from honed.errors import PlantError
from honed.optimizers.candidates import example_id
from honed.programs.tasks import Task

PlantKind = Literal["hidden_rule", "format", "distractor"]
PLANT_KINDS: tuple[str, ...] = ("hidden_rule", "format", "distractor")
RULE_OUTPUT = "unknown"          # the fixed output of a hidden rule in a text-to-text task
DISTRACTOR_RATE = 0.22
UPPER_KEYWORDS = ["upper", "uppercase", "upper-case", "capital", "capitals", "capitalized", "capitalised",
                  "capitalize", "capitalise", "capitalization", "capitalisation", "caps", "all-caps", "allcaps"]
BRACKET_KEYWORDS = ["bracket", "brackets", "bracketed", "square-bracketed"]


class Plant(BaseModel):
    """What was planted: the cause in words, the keywords that name it, and the examples it touched."""

    kind: PlantKind
    task: str = Field(description="the task the plant was put into")
    planted_task: str = Field(description="the name of the planted task")
    seed: int
    description: str = Field(description="the planted cause, stated in words (what a judge model is asked about)")
    keywords: list[str] = Field(description="a reflection mentioning any of these names the cause; empty when "
                                            "there is no cause to find")
    decoy_keywords: list[str] = Field(default_factory=list, description="distractor only: words that would be "
                                                                        "a false identification")
    affected: list[str] = Field(description="ids of training-pool examples the plant applies to")
    changed: list[str] = Field(description="ids of training-pool examples whose gold output it changed")
    train_size: int = Field(description="training-pool examples")
    details: dict[str, Any] = Field(default_factory=dict)


class ExactCase:
    """Exact match that keeps case and punctuation (whitespace is collapsed), against any accepted answer.

    honed's default metric lower-cases and strips punctuation, which would hide a format requirement."""

    name = "exact_case"

    def __init__(self, field: str) -> None:
        self.field = field

    @staticmethod
    def _clean(value: Any) -> str:
        return re.sub(r"\s+", " ", "" if value is None else str(value)).strip()

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        got = self._clean(getattr(prediction, self.field, None) if prediction is not None else None)
        answers = example.get("answers") if hasattr(example, "get") else None
        accepted = list(answers) if answers else [example[self.field]]
        return float(any(got == self._clean(a) for a in accepted))

    def __repr__(self) -> str:
        return f"ExactCase({self.field!r})"


# -------------------------------------------------------------------------------------------- helpers


def _with_output(example: dspy.Example, field: str, value: str, answers: list[str] | None = None) -> dspy.Example:
    """A copy of `example` whose gold output is `value` (accepted answers replaced, or dropped)."""
    data = {k: v for k, v in example.toDict().items() if k != "answers"}
    data[field] = value
    if answers:
        data["answers"] = answers
    return dspy.Example(**data).with_inputs(*example.inputs().keys())


def _ids(examples: list[dspy.Example]) -> list[str]:
    return [example_id(e, i) for i, e in enumerate(examples)]


def _excluded_words(task: Task) -> set[str]:
    """Words that cannot be a trigger: they name the task or its labels, so a reflection would say them anyway."""
    words = words_of(task.instructions) | {task.input_field.lower(), task.output_field.lower()}
    for label in task.labels or []:
        words |= words_of(label)
    return words


def _trigger(task: Task, seed: int) -> tuple[str, float, tuple[float, float]]:
    inputs = [str(e[task.input_field]) for e in task.train]
    try:
        return choose_trigger(inputs, seed=seed, exclude=_excluded_words(task))
    except ValueError as exc:
        raise PlantError(f"cannot choose a trigger word in task {task.name}: {exc} (one-word inputs?); "
                         "use a task whose inputs are sentences, e.g. sentiment") from None


# -------------------------------------------------------------------------------------------- plants


def hidden_rule(task: Task, *, seed: int = 0) -> tuple[Task, Plant]:
    """Relabel every example whose input contains a seeded trigger word with one fixed label."""
    trigger, share, band = _trigger(task, seed)
    field = task.output_field
    hits = [e for e in task.train if contains_word(str(e[task.input_field]), trigger)]
    if task.kind == "classify" and task.labels:
        natural = Counter(str(e[field]) for e in hits)
        label = min(task.labels, key=lambda candidate: (natural[candidate], candidate))
    else:
        label = RULE_OUTPUT

    def apply(examples: list[dspy.Example]) -> list[dspy.Example]:
        return [_with_output(e, field, label) if contains_word(str(e[task.input_field]), trigger) else e
                for e in examples]

    ids = _ids(task.train)
    affected = [i for i, e in zip(ids, task.train, strict=True) if contains_word(str(e[task.input_field]), trigger)]
    changed = [i for i, e in zip(ids, task.train, strict=True)
               if contains_word(str(e[task.input_field]), trigger) and str(e[field]) != label]
    name = f"{task.name}+hidden_rule"
    # output_type=None: the planted Task is typed after its new gold outputs (an int task's rule output
    # "unknown" is text).
    planted = replace(task, name=name, train=apply(task.train), test=apply(task.test), output_type=None)
    record = Plant(
        kind="hidden_rule", task=task.name, planted_task=name, seed=seed,
        description=(f"Every input that contains the word '{trigger}' has the {field} '{label}', "
                     "whatever else the input says."),
        keywords=[trigger], affected=affected, changed=changed, train_size=len(task.train),
        details={"trigger": trigger, "label": label, "share_of_inputs": round(share, 4), "band": list(band),
                 "contradicted": len(changed),
                 "contradiction_rate": round(len(changed) / len(affected), 4) if affected else 0.0,
                 "affected_test": sum(contains_word(str(e[task.input_field]), trigger) for e in task.test)})
    return planted, record


def format_rule(task: Task, *, seed: int = 0, style: Literal["auto", "upper", "brackets"] = "auto"
                ) -> tuple[Task, Plant]:
    """Write every gold output in UPPER CASE (or in [brackets] where case would not show); the seed
    instruction says nothing about it. `seed` is recorded only: the plant has no random choice."""
    field = task.output_field
    outputs = [str(e[field]) for e in task.train]
    if style == "auto":
        style = "upper" if sum(o.upper() != o for o in outputs) * 2 >= len(outputs) else "brackets"
    if style not in ("upper", "brackets"):
        raise PlantError(f"format style must be 'auto', 'upper' or 'brackets', got {style!r}")
    change: Callable[[str], str] = str.upper if style == "upper" else (lambda text: f"[{text}]")

    def apply(examples: list[dspy.Example]) -> list[dspy.Example]:
        planted = []
        for e in examples:
            answers = [change(str(a)) for a in e.get("answers") or []]
            planted.append(_with_output(e, field, change(str(e[field])), answers or None))
        return planted

    ids = _ids(task.train)
    changed = [i for i, o in zip(ids, outputs, strict=True) if change(o) != o]
    name = f"{task.name}+format"
    planted = replace(task, name=name, train=apply(task.train), test=apply(task.test), kind="transform",
                      labels=None, output_type=None, metric=ExactCase(field))
    description = (f"Every {field} must be written entirely in UPPER CASE letters." if style == "upper" else
                   f"Every {field} must be wrapped in square brackets, like [answer].")
    record = Plant(kind="format", task=task.name, planted_task=name, seed=seed, description=description,
                   keywords=list(UPPER_KEYWORDS if style == "upper" else BRACKET_KEYWORDS), affected=ids,
                   changed=changed, train_size=len(task.train),
                   details={"style": style, "program": "transform", "metric": "exact_case"})
    return planted, record


def distractor(task: Task, *, seed: int = 0, rate: float = DISTRACTOR_RATE) -> tuple[Task, Plant]:
    """Replace the gold output of a seeded ~22% of training examples with another one: errors with no
    common cause. A decoy word, chosen as `hidden_rule` would choose its trigger, is recorded, not used."""
    if not 0 < rate < 1:
        raise PlantError(f"distractor rate must be between 0 and 1, got {rate!r}")
    field = task.output_field
    train = list(task.train)
    count = max(1, round(rate * len(train)))
    rng = random.Random(f"distractor:{seed}")
    chosen = sorted(rng.sample(range(len(train)), min(count, len(train))))
    pool = sorted({str(e[field]) for e in train}) if not (task.kind == "classify" and task.labels) else list(
        task.labels)
    ids = _ids(train)
    changed = []
    for index in chosen:
        natural = str(train[index][field])
        others = [o for o in pool if o != natural]
        if not others:
            continue
        train[index] = _with_output(train[index], field, rng.choice(others))
        changed.append(ids[index])
    try:
        decoy, share, _ = _trigger(task, seed)
        decoy_keywords, decoy_note = [decoy], {"decoy": decoy, "decoy_share_of_inputs": round(share, 4)}
    except PlantError as exc:
        decoy_keywords, decoy_note = [], {"decoy": None, "decoy_note": str(exc)}
    name = f"{task.name}+distractor"
    planted = replace(task, name=name, train=train, output_type=None)
    record = Plant(
        kind="distractor", task=task.name, planted_task=name, seed=seed,
        description=(f"Random label noise on {len(changed)} of {len(train)} training examples: the errors have "
                     "no common cause."),
        keywords=[], decoy_keywords=decoy_keywords, affected=[ids[i] for i in chosen], changed=changed,
        train_size=len(train), details={"rate": rate, **decoy_note})
    return planted, record


PLANTS: dict[str, Callable[..., tuple[Task, Plant]]] = {
    "hidden_rule": hidden_rule,
    "format": format_rule,
    "distractor": distractor,
}


def plant(task: Task, kind: str, *, seed: int = 0) -> tuple[Task, Plant]:
    """Plant `kind` (one of `PLANT_KINDS`) into `task`."""
    if kind not in PLANTS:
        raise PlantError(f"unknown plant {kind!r}; available: {', '.join(PLANT_KINDS)}")
    return PLANTS[kind](task, seed=seed)
