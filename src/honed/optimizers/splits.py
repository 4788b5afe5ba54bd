"""Train/validation splits and content hashes, shared by every optimizer."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence

import dspy


def split_train_val(trainset: Sequence[dspy.Example], valset: Sequence[dspy.Example] | None, *,
                    seed: int = 0, val_fraction: float = 0.3) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Use the given valset, or hold out a seeded `val_fraction` of the trainset (at least one example)."""
    train = list(trainset)
    if valset:
        return train, list(valset)
    if len(train) < 2:
        return train, list(train)
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    cut = max(1, int(len(train) * val_fraction))
    return [train[i] for i in order[cut:]], [train[i] for i in order[:cut]]


def content_hash(examples: Sequence[dspy.Example]) -> str:
    """A hash of the examples' contents, recorded so a run directory is never resumed on other data."""
    digest = hashlib.sha256()
    for example in examples:
        digest.update(json.dumps(example.toDict(), sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]
