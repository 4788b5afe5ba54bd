"""Evaluate a program on examples, counting what users ask about: parse failures, model calls, cache hits.

Built on DSPy's `ParallelExecutor`; unlike `dspy.Evaluate`, it keeps a record per example and tells a
parse failure (the model's answer did not fit the signature) apart from other errors. A failing
example is counted and scored 0; it never stops the evaluation, unless the error means no later call
can succeed either (requests blocked, budget spent, provider unreachable): that one stops it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError
from dspy.utils.parallelizer import ParallelExecutor

from honed.config import current_cache
from honed.errors import BudgetExhausted, ModelRequestBlocked, ProviderUnavailable, find_cause
from honed.models.faults import raise_if_unavailable


@dataclass
class StepTrace:
    """What one predictor saw and produced while the program ran on one example."""

    predictor: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]


@dataclass
class ExampleResult:
    example: dspy.Example
    prediction: dspy.Prediction | None
    score: float
    error: str | None = None
    parse_failure: bool = False
    trace: list[StepTrace] = field(default_factory=list)
    feedback: str | None = None


def score_of(value: Any) -> tuple[float, str | None]:
    """A metric may return a number, or an object with `.score` and optional `.feedback` text."""
    if hasattr(value, "score"):
        return float(value.score), getattr(value, "feedback", None)
    return float(value), None


@dataclass
class EvalReport:
    """Scores plus accounting. `lm_calls` counts requests the cache could not answer."""

    score: float
    n: int
    parse_failures: int
    errors: int
    lm_calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    wall_s: float
    results: list[ExampleResult] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """The JSON contract of `honed eval --json`."""
        return {"score": round(self.score, 4), "n": self.n, "parse_failures": self.parse_failures,
                "errors": self.errors, "lm_calls": self.lm_calls, "cache_hits": self.cache_hits,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "wall_s": round(self.wall_s, 2)}


def _steps(trace: list, names: dict[int, str]) -> list[StepTrace]:
    return [StepTrace(names.get(id(predictor), type(predictor).__name__), dict(inputs),
                      dict(prediction.toDict()) if hasattr(prediction, "toDict") else {})
            for predictor, inputs, prediction in trace]


def stops_evaluation(error: BaseException) -> bool:
    """Whether `error` must stop an evaluation (and a compile) rather than count as one failed example."""
    return any(find_cause(error, kind) is not None for kind in (ModelRequestBlocked, BudgetExhausted,
                                                                  ProviderUnavailable))


def run_example(program: dspy.Module, metric: Callable, example: dspy.Example,
                names: dict[int, str] | None = None) -> ExampleResult:
    """Run one example, keeping each predictor's inputs and outputs; failures are recorded, not raised.

    Errors that must stop the caller (blocked model requests, a spent budget) are re-raised; a provider
    that cannot be reached raises `ProviderUnavailable`.
    """
    names = names if names is not None else {id(p): n for n, p in program.named_predictors()}
    trace: list = []
    try:
        with dspy.context(trace=trace):
            prediction = program(**example.inputs())
    except KeyboardInterrupt:
        raise
    except AdapterParseError as exc:
        return ExampleResult(example, None, 0.0, f"parse failure: {exc}".splitlines()[0], parse_failure=True,
                             trace=_steps(trace, names))
    except Exception as exc:  # a failed model call is counted, unless no later call can succeed either
        if stops_evaluation(exc):
            raise
        raise_if_unavailable(exc)
        return ExampleResult(example, None, 0.0, f"{type(exc).__name__}: {exc}".splitlines()[0],
                             trace=_steps(trace, names))
    score, feedback = score_of(metric(example, prediction))
    return ExampleResult(example, prediction, score, trace=_steps(trace, names), feedback=feedback)


def _usage_totals(lm: Any, start: int) -> tuple[int, int]:
    prompt = completion = 0
    for entry in getattr(lm, "history", [])[start:]:
        usage = entry.get("usage") or {}
        prompt += int(usage.get("prompt_tokens") or 0)
        completion += int(usage.get("completion_tokens") or 0)
    return prompt, completion


def evaluate(program: dspy.Module, examples: Sequence[dspy.Example], metric: Callable, *,
             num_threads: int | None = None, progress: bool | None = None, lm: Any = None) -> EvalReport:
    """Run `program` on every example under the configured model and score it with `metric`."""
    lm = lm or dspy.settings.lm
    cache = current_cache()
    model = getattr(lm, "model", None)
    before = cache.counts(model)
    history_start = len(getattr(lm, "history", []))
    show = sys.stderr.isatty() if progress is None else progress
    bar = None
    if show:
        from tqdm import tqdm

        bar = tqdm(total=len(examples), file=sys.stderr, desc="eval", dynamic_ncols=True)
    lock = threading.Lock()
    done = {"correct": 0.0, "n": 0}

    names = {id(p): n for n, p in program.named_predictors()}
    fatal: list[Exception] = []  # the first error that stops the evaluation; later examples make no call

    def task(example: dspy.Example) -> ExampleResult:
        if fatal:
            return ExampleResult(example, None, 0.0, "not run: the evaluation stopped")
        try:
            result = run_example(program, metric, example, names)
        except Exception as exc:
            if not stops_evaluation(exc):
                raise
            fatal.append(exc)
            return ExampleResult(example, None, 0.0, "not run: the evaluation stopped")
        if bar is not None:
            with lock:
                done["n"] += 1
                done["correct"] += result.score
                bar.set_postfix(score=f"{done['correct'] / done['n']:.2f}")
                bar.update(1)
        return result

    started = time.perf_counter()
    executor = ParallelExecutor(num_threads=num_threads or dspy.settings.num_threads, max_errors=len(examples) + 1,
                                disable_progress_bar=True, timeout=3600)
    try:
        with dspy.context(lm=lm):
            outcomes = executor.execute(task, list(examples))
    finally:
        if bar is not None:
            bar.close()
    if fatal:
        raise fatal[0]
    results = []
    for example, outcome in zip(examples, outcomes, strict=True):
        if isinstance(outcome, Exception) and stops_evaluation(outcome):
            raise outcome
        if not isinstance(outcome, ExampleResult):
            outcome = ExampleResult(example, None, 0.0, f"{type(outcome).__name__}: {outcome}")
        results.append(outcome)
    after = cache.counts(model)
    prompt_tokens, completion_tokens = _usage_totals(lm, history_start)
    n = len(results)
    return EvalReport(
        score=sum(r.score for r in results) / n if n else 0.0, n=n,
        parse_failures=sum(r.parse_failure for r in results),
        errors=sum(r.error is not None and not r.parse_failure for r in results),
        lm_calls=after.misses - before.misses, cache_hits=after.hits - before.hits,
        prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
        wall_s=time.perf_counter() - started, results=results,
    )
