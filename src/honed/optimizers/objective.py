"""What honed's optimizers rank candidates by on validation: the mean score, or the mean with every answer
form weighted equally when the validation set's answers fall into a few forms.

Why: 20 validation examples over-represent one answer by chance, and a small target's bias toward one
answer then decides the race. In the paper's setting, larger_animal's seed-0 validation set answers the
second animal named 15 times of 20 (its training file 56 of 100, its test file neither), and behavior at
seed 2 kept 16 demonstrations that scored 0.70 on validation and 0.47 on test, the uncompiled program's
level. Sentiment's and word_in_context's validation sets split 13 to 7 at some seeds. The balanced mean
scores "answers the majority form" as half right, whatever the split, so the gain that wins is a gain on
every form. It applies only where it can: at least two forms and at most a quarter as many as validation
examples (two labels, where in the input the answer is copied from); a task whose answers are free text
or take many values (a letter per word) keeps the plain mean, since a form seen once or twice would weigh
as much as the rest together. DSPy's optimizers keep their own objective (the plain mean).
"""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from honed.optimizers.demo_sets import answer_forms


class ValidationObjective:
    """The score a list of per-example validation scores (validation order, from its first example) gets."""

    def __init__(self, train: Sequence[dspy.Example], val: Sequence[dspy.Example], *, balance: bool) -> None:
        # Forms are named over train and validation together, so that "a label set" is decided on enough
        # examples; only the validation examples' forms are kept. Not named at all when not balancing
        # (DSPy's optimizers), which would only pay for a pass over the data.
        forms = answer_forms([*train, *val])[len(train):] if balance and val else []
        self.balanced = 2 <= len(set(forms)) <= max(2, len(val) // 4)
        self.forms = forms

    @property
    def name(self) -> str:
        return "balanced" if self.balanced else "mean"

    def score(self, scores: Sequence[float]) -> float:
        """The objective over the first `len(scores)` validation examples (a race's prefix, or all)."""
        if not scores:
            return 0.0
        if not self.balanced:
            return sum(scores) / len(scores)
        by_form: dict[str, list[float]] = {}
        for form, value in zip(self.forms, scores, strict=False):
            by_form.setdefault(form, []).append(value)
        return sum(sum(v) / len(v) for v in by_form.values()) / len(by_form)
