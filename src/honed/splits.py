"""Seeded splits of examples and their content hashes: one shuffle for every split honed draws.

A task's train/validation split for a compile (`honed.compiling.task_splits`), an optimizer's held-out
validation share when it is given none (`split_train_val`) and a BIG-Bench Hard file's train/test split
(`honed.programs.tasks.load_bbh_task`) all cut the same seeded shuffle (`seeded_split`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from typing import TypeVar

import dspy

T = TypeVar("T")


def seeded_split(items: Sequence[T], first: int, *, seed: int) -> tuple[list[T], list[T]]:
    """`items` shuffled by `seed` (`random.Random(seed).shuffle`), cut into the first `first` and the rest."""
    order = list(items)
    random.Random(seed).shuffle(order)
    return order[:first], order[first:]


def share(n: int, fraction: float) -> int:
    """How many of `n` items a `fraction` of them is: rounded down, at least one."""
    return max(1, int(n * fraction))


def split_train_val(trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example] | None, *,
                    seed: int = 0, val_fraction: float = 0.3) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Use the given valset, or hold out a seeded `val_fraction` of the trainset (at least one example)."""
    train = list(trainset)
    if valset:
        return train, list(valset)
    if len(train) < 2:
        return train, list(train)
    val, rest = seeded_split(train, share(len(train), val_fraction), seed=seed)
    return rest, val


def content_hash(examples: Sequence[dspy.Example]) -> str:
    """A hash of the examples' contents, recorded so a run directory is never resumed on other data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.toDict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
