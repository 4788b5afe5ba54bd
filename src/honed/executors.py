"""Where a compile's evaluations run: the one seam between the optimizers and the machinery that runs
a program on examples.

A compile's cost is running candidate programs on examples, which is embarrassingly parallel. The
optimizers never call `honed.evaluate.evaluate` themselves; they hand a program and examples to the
run's `Executor`, so that another engine (processes, a cluster) plugs in here without touching any
optimizer. Whatever runs the examples, the budget and the cache stay where the calls are made
(`honed.models.budgeted`, the cache), so call counts and results do not depend on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import dspy

from honed.evaluate import EvalReport, evaluate


@runtime_checkable
class Executor(Protocol):
    """Runs one program on examples and scores each with the metric, in example order."""

    def evaluate(self, program: dspy.Module, examples: Sequence[dspy.Example], metric: Callable) -> EvalReport:
        ...


class ThreadExecutor:
    """DSPy's worker threads in this process, sharing one model instance per model (the default)."""

    def __init__(self, num_threads: int | None = None) -> None:
        self.num_threads = num_threads

    def evaluate(self, program: dspy.Module, examples: Sequence[dspy.Example], metric: Callable) -> EvalReport:
        return evaluate(program, examples, metric, num_threads=self.num_threads, progress=False)
