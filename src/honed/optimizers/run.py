"""What one compile holds while it runs: the budget, the run ledger, budgeted evaluation and progress.

`CompileRun` evaluates only what the budget can pay for *before* it starts (each step's upper bound:
examples x predictors), so a step is never cut short mid-way and a compile is deterministic for a
given seed and warm cache. Each evaluation is a ledger step with a stable id.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import dspy

from honed.config import current_cache, make_lm, optimizer_lm
from honed.evaluate import EvalReport
from honed.executors import Executor, ThreadExecutor
from honed.models.faults import raise_if_unavailable
from honed.models.identity import lm_identity
from honed.optimizers.budget import CallBudget
from honed.runs.ledger import RunLedger
from honed.runs.records import Record


class CompileRun:
    """One compile: budget, ledger, progress bar, the executor its evaluations run on, and call counts."""

    def __init__(self, *, budget: CallBudget, ledger: RunLedger, metric: Callable, predictors: int,
                 progress: bool | None = None, num_threads: int | None = None,
                 executor: Executor | None = None) -> None:
        self.budget = budget
        self.ledger = ledger
        self.metric = metric
        self.predictors = max(1, predictors)
        self.num_threads = num_threads
        self.executor = executor or ThreadExecutor(num_threads)
        self.started = time.perf_counter()
        self._cache_before = current_cache().counts()
        show = sys.stderr.isatty() if progress is None else progress
        self.bar = None
        if show:
            from tqdm import tqdm

            self.bar = tqdm(total=budget.limit, file=sys.stderr, desc="compile", unit="call", dynamic_ncols=True)

    def eval_cost(self, n: int) -> int:
        return n * self.predictors

    def affords_eval(self, n: int) -> bool:
        return self.budget.affords(self.eval_cost(n))

    def evaluate(self, program: dspy.Module, examples: Sequence[dspy.Example]) -> EvalReport:
        """Evaluate under the budget (the caller has checked `affords_eval`)."""
        with self.budget.scope():
            report = self.executor.evaluate(program, examples, self.metric)
        self.tick()
        return report

    def call(self, fn: Callable[[], Any], cost: int = 1) -> Any:
        """Run an optimizer-model call (or a few) under the budget.

        A provider that cannot be reached raises `ProviderUnavailable`, which stops the compile (a
        failed call the caller may count and skip raises as it came).
        """
        with self.budget.scope():
            try:
                result = fn()
            except Exception as exc:
                raise_if_unavailable(exc)
                raise
        self.tick()
        return result

    def tick(self, **postfix: Any) -> None:
        if self.bar is not None:
            self.bar.n = self.budget.used
            if postfix:
                self.bar.set_postfix(**postfix)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.ledger.close()

    def paid_calls(self) -> int:
        """Provider calls of this compile, all models: what the budget charged that no cache answered.

        Counted at the model-call boundary rather than from cache misses, so that an LM that does
        not cache (`cache=False`, which never asks the cache) is counted too.
        """
        return self.budget.paid

    def cache_hits(self) -> int:
        """Requests answered from the cache since this compile started, all models."""
        return current_cache().counts().hits - self._cache_before.hits

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def log(self, record: Record) -> None:
        """Append a typed record with the compile's accounting (requests charged, paid calls, seconds)."""
        self.ledger.append(record.stamped(budget_used=self.budget.used, paid_calls=self.paid_calls(),
                                          elapsed_s=round(self.elapsed(), 2)))


def resolve_optimizer_lm(model: Any) -> dspy.BaseLM:
    """The optimizer's model: an LM as given, a litellm string made into one, or the configured default."""
    if model is None:
        return optimizer_lm()
    return make_lm(model) if isinstance(model, str) else model


def model_settings(task_lm: Any, opt_lm: Any) -> dict[str, Any]:
    """Both models as a run records them: the strings, and the identities behind them (a GGUF file's hash,
    a remote endpoint), so that a run never resumes on a model other than the one it started with."""
    return {"task_model": getattr(task_lm, "model", None), "optimizer_model": getattr(opt_lm, "model", None),
            "task_model_identity": lm_identity(task_lm), "optimizer_model_identity": lm_identity(opt_lm)}

