"""Optimizers by name, for `honed compile --optimizer NAME` and the benchmarks.

`reflective` and `behavior` are honed's own; the others run DSPy's optimizers on the same program, model, adapter,
cache and budget (see `honed.optimizers.dspy_optimizers`), so that only the optimizer differs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from dspy.teleprompt import Teleprompter

from honed.errors import ConfigError
from honed.optimizers.behavior import BehaviorOptimizer
from honed.optimizers.dspy_optimizers import DSPY_OPTIMIZERS, DSPyOptimizer
from honed.optimizers.reflective import ReflectiveRefine


def _reflective(metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
    return ReflectiveRefine(metric, budget=budget, seed=seed, **options)


def _dspy(kind: str) -> Callable[..., Teleprompter]:
    def make(metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
        return DSPyOptimizer(kind, metric, budget=budget, seed=seed, **options)

    make.__name__ = f"_dspy_{kind}"
    make.__doc__ = f"DSPy's {DSPY_OPTIMIZERS[kind]} under honed's budget, ledger and validation guard."
    return make


def _behavior(metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
    return BehaviorOptimizer(metric, budget=budget, seed=seed, **options)


OPTIMIZERS: dict[str, Callable[..., Teleprompter]] = {
    "reflective": _reflective,
    "behavior": _behavior,
    **{kind: _dspy(kind) for kind in DSPY_OPTIMIZERS},
}


def check_optimizer(name: str) -> None:
    """Refuse an optimizer name `make_optimizer` does not know, listing the ones it does."""
    if name not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; available: {', '.join(sorted(OPTIMIZERS))}")


def make_optimizer(name: str, metric: Callable, *, budget: int, seed: int, **options: Any) -> Teleprompter:
    check_optimizer(name)
    return OPTIMIZERS[name](metric, budget=budget, seed=seed, **options)
