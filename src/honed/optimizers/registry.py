"""Optimizers by name, for `honed compile --optimizer NAME` and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dspy.teleprompt import Teleprompter

from honed.errors import ConfigError
from honed.optimizers.reflective import ReflectiveRefine


def _reflective(metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
    return ReflectiveRefine(metric, budget=budget, seed=seed, **options)


OPTIMIZERS: dict[str, Callable[..., Teleprompter]] = {
    "reflective": _reflective,
}


def make_optimizer(name: str, metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; available: {', '.join(sorted(OPTIMIZERS))}")
    return OPTIMIZERS[name](metric, budget=budget, seed=seed, **options)
