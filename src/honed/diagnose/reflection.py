"""Question 1 of Ma et al. (2024): does the optimizer's reflection find the true cause of the errors, or
repeat its own prior about the task?

For each plant (`honed.diagnose.plants`) the optimizer compiles the planted task (`compile_task`, so budget,
splits and run directories are those of `honed compile`), with its model captured
(`honed.diagnose.capture`). The reflections are read from the ledger for honed's own optimizers (the fields
that are reflections) and from the captured optimizer-model outputs for DSPy's; each is scored by keyword
(`honed.diagnose.scoring`) and, optionally, by a judge model. For the distractor, which has no cause, the
same scoring against its decoy word measures false identification.

One compile makes few reflections (honed's `reflective` makes about two per plant at budget 100), too few
for a rate. `repeats` compiles each plant again with the next compile seeds and pools the reflections; the
pooled rates carry a Wilson score interval (`wilson_interval`). The plant itself stays fixed by `seed`.

The result is one JSON object (schema `honed.diagnose.reflection/1`, documented in `diagnose/__init__.py`);
repeats only add keys to it, and counts and rates are pooled over repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import sqrt
from pathlib import Path
from statistics import NormalDist
from typing import Any

import dspy

from honed.compiling import DEFAULT_TRAIN_SIZE, DEFAULT_VAL_SIZE, CompileOutcome, compile_task
from honed.config import optimizer_lm
from honed.diagnose.capture import OptimizerCapture, capture_optimizer_model
from honed.diagnose.extract import ledger_reflections
from honed.diagnose.judge import Judge
from honed.diagnose.plants import PLANT_KINDS, Plant, PlantError, plant
from honed.diagnose.scoring import TEXT_LIMIT, EchoStripper, ScoredReflection, score
from honed.errors import ConfigError
from honed.optimizers.registry import check_optimizer
from honed.programs.tasks import Task
from honed.runs import Run

SCHEMA = "honed.diagnose.reflection/1"
_COMPILE_KEYS = ("baseline_val_score", "val_score", "verification_rate", "claims", "claims_held", "edits",
                 "edits_held", "stop_reason", "run_dir")


def parse_plants(text: str | Sequence[str]) -> list[str]:
    """Plant kinds from a comma-separated string or a list, checked and without repeats."""
    kinds = [k.strip() for k in (text.split(",") if isinstance(text, str) else text) if k.strip()]
    unknown = [k for k in kinds if k not in PLANT_KINDS]
    if unknown or not kinds:
        raise PlantError(f"unknown plant(s) {', '.join(unknown) or '(none given)'}; available: "
                         f"{', '.join(PLANT_KINDS)}")
    return list(dict.fromkeys(kinds))


def _output_fields(task: Task) -> set[str]:
    return {name for _, predictor in task.program().named_predictors() for name in predictor.signature.output_fields}


def _decoy_cause(record: Plant) -> str:
    return (f"Inputs that contain the word '{record.decoy_keywords[0]}' are all answered the same way, whatever "
            "else they say.")


def _rate(named: int, total: int) -> float | None:
    return round(named / total, 4) if total else None


INTERVAL_CONFIDENCE = 0.9


def wilson_interval(successes: int, trials: int, confidence: float = INTERVAL_CONFIDENCE) -> list[float] | None:
    """The Wilson score interval `[low, high]` of a binomial rate, or None for no trials.

    Rates here come from 2-30 reflections and are often 0 or 1, where the textbook (Wald) interval
    collapses to a point; Wilson's stays inside [0, 1] and keeps a width there (0/10 at 90%: [0, 0.21])."""
    if trials <= 0:
        return None
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p, z2 = successes / trials, z * z
    denominator = 1 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denominator
    half = z * sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials)) / denominator
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def repeat_run_dir(out_dir: str | Path | None, kind: str, repeat: int) -> Path | None:
    """`<out_dir>/runs/<plant>` for the first repeat (the directory a single compile always had, so its
    results and caches stay valid), `<plant>-r<k>` for the others; None: compile's default, named by seed."""
    if out_dir is None:
        return None
    return Path(out_dir) / "runs" / (kind if repeat == 0 else f"{kind}-r{repeat}")


@dataclass
class _Repeat:
    """One compile of a planted task and its scored reflections: the unit that repeats pool."""

    repeat: int
    seed: int
    outcome: CompileOutcome
    source: str
    scored: list[ScoredReflection]
    uniform: list[ScoredReflection]  # every non-answer output of the optimizer model, scored alike
    task_answers: int
    optimizer_calls: int
    failed_calls: int
    judge_calls: int

    def naming(self) -> int:
        return sum(r.named for r in self.scored)

    def describe(self) -> dict[str, Any]:
        """The per-repeat counts: enough to see whether one seed carries the pooled rate."""
        r = self.outcome.result
        return {"repeat": self.repeat, "seed": self.seed, "run_dir": r.run_dir,
                "reflection_count": len(self.scored), "naming": self.naming(),
                "rate": _rate(self.naming(), len(self.scored)),
                "baseline_val_score": r.baseline_val_score, "val_score": r.val_score,
                "stop_reason": r.stop_reason,
                "calls": {"lm_calls": r.lm_calls, "budget_used": r.budget_used,
                          "cache_hits": r.cache_hits, "optimizer_calls": self.optimizer_calls,
                          "judge_calls": self.judge_calls}}


def _score_repeat(planted: Task, record: Plant, optimizer: str, repeat: tuple[int, int], outcome: CompileOutcome,
                  capture: OptimizerCapture, judge: Judge | None, text_limit: int) -> _Repeat:
    """Read and score the reflections of one compile (ledger fields for honed's optimizers, captured
    optimizer-model outputs for DSPy's), against the cause, or the decoy word for the distractor.
    `repeat` is (repeat index, compile seed)."""
    decoy = record.kind == "distractor"
    keywords = record.decoy_keywords if decoy else record.keywords
    stripper = EchoStripper(str(e[planted.input_field]) for e in planted.train)
    run_dir = Path(outcome.result.run_dir)
    captured, task_answers = capture.reflections(_output_fields(planted))
    run = Run.open(run_dir)
    if run.dspy_optimizer is None:  # honed's own optimizers write their reflections into the ledger
        source = "ledger"
        raw = ledger_reflections(run.records)
    else:
        source = "optimizer_model"
        raw = [("response", label, text) for label, text in captured]
    judge_calls_before = judge.calls if judge else 0
    cause = (_decoy_cause(record) if record.decoy_keywords else None) if decoy else record.description
    scored: list[ScoredReflection] = []
    for kind, step, text in raw:
        item = score(kind, step, text, keywords, stripper, text_limit)
        if judge is not None and cause is not None:
            item.judge = judge(cause, stripper.strip(text))
        scored.append(item)
    uniform = [score("response", label, text, keywords, stripper, text_limit) for label, text in captured]
    return _Repeat(repeat=repeat[0], seed=repeat[1], outcome=outcome,
                   source=source, scored=scored, uniform=uniform, task_answers=task_answers,
                   optimizer_calls=len(capture.calls), failed_calls=capture.failed,
                   judge_calls=(judge.calls - judge_calls_before) if judge else 0)


def _plant_result(record: Plant, repeats: list[_Repeat], judge: Judge | None) -> dict[str, Any]:
    """One plant's entry: the reflections of all its repeats pooled, each repeat's counts in `per_repeat`.

    With one repeat every key means what it meant before repeats existed; `compile` is the first
    repeat's (`per_repeat` has each one's scores)."""
    decoy = record.kind == "distractor"
    scored = [r for rep in repeats for r in rep.scored]
    uniform = [r for rep in repeats for r in rep.uniform]
    named = sum(r.named for r in scored)
    judged = [r.judge for r in scored if r.judge is not None]
    judge_calls = sum(rep.judge_calls for rep in repeats)
    judge_summary = None
    if judge is not None:
        judge_summary = {"model": judge.model, "verdicts": len(judged), "naming": sum(judged),
                         "rate": _rate(sum(judged), len(judged)), "any": any(judged) if judged else None,
                         "calls": judge_calls, "interval": wilson_interval(sum(judged), len(judged))}
    rate, interval = _rate(named, len(scored)), wilson_interval(named, len(scored))
    first = repeats[0].outcome.summary  # the first repeat's compile, as `honed compile --json` shows it
    results = [rep.outcome.result for rep in repeats]
    return {
        "plant": record.model_dump(mode="json"),
        "scored_against": "decoy" if decoy else "cause",
        "keywords": record.decoy_keywords if decoy else record.keywords,
        "source": repeats[0].source,
        "reflections": [{**r.model_dump(mode="json"), "repeat": rep.repeat} for rep in repeats for r in rep.scored],
        "reflection_count": len(scored),
        "naming": named,
        "identification_rate": None if decoy else rate,
        "identification_interval": None if decoy else interval,
        "identified": None if decoy else named > 0,
        "false_identification_rate": rate if decoy else None,
        "false_identification_interval": interval if decoy else None,
        "falsely_identified": (named > 0) if decoy else None,
        "judge": judge_summary,
        "optimizer_outputs": {"calls": sum(rep.optimizer_calls for rep in repeats),
                              "failed_calls": sum(rep.failed_calls for rep in repeats),
                              "task_answers": sum(rep.task_answers for rep in repeats),
                              "reflections": len(uniform), "naming": sum(r.named for r in uniform),
                              "rate": _rate(sum(r.named for r in uniform), len(uniform))},
        "compile": {k: first.get(k) for k in _COMPILE_KEYS if k in first},
        "calls": {"lm_calls": sum(r.lm_calls for r in results), "budget_used": sum(r.budget_used for r in results),
                  "budget": results[0].budget, "cache_hits": sum(r.cache_hits for r in results),
                  "optimizer_calls": sum(rep.optimizer_calls for rep in repeats), "judge_calls": judge_calls},
        "repeats": len(repeats),
        "per_repeat": [rep.describe() for rep in repeats],
    }


def _check_repeats(repeats: int, min_reflections: int | None) -> None:
    if not isinstance(repeats, int) or repeats < 1:
        raise ConfigError(f"repeats must be a positive integer, not {repeats!r}")
    if min_reflections is not None and (not isinstance(min_reflections, int) or min_reflections < 1):
        raise ConfigError(f"min_reflections must be a positive integer or None, not {min_reflections!r}")


def diagnose_reflection(task: Task, optimizer: str, *, plants: str | Sequence[str] = PLANT_KINDS,
                        budget: int = 300, seed: int = 0, train_size: int = DEFAULT_TRAIN_SIZE,
                        val_size: int = DEFAULT_VAL_SIZE, judge_model: str | dspy.BaseLM | None = None,
                        out_dir: str | Path | None = None, cache_dir: Path | None = None,
                        progress: bool | None = False, text_limit: int = TEXT_LIMIT, repeats: int = 1,
                        min_reflections: int | None = None, **options: Any) -> dict[str, Any]:
    """Compile each planted variant of `task` with `optimizer` and score its reflections against the plant.

    `seed` fixes the plant (trigger word, relabelled examples). Each plant is compiled `repeats` times with
    compile seeds `seed, seed+1, ...`: the compile seed draws the train/validation split and the
    optimizer's sampling, so each repeat shows the optimizer other mistakes and its reflections are not
    replays of one another (a sampling seed alone would leave each round's greedy reflection identical).
    With `min_reflections`, a plant stops repeating once it has that many reflections (`repeats` caps it).

    Run directories go to `<out_dir>/runs/<plant>` for the first repeat, `<plant>-r<k>` for the others
    (default: under the cache directory, as for `honed compile`), so a repeated diagnosis replays from the
    cache. `options` go to the optimizer."""
    check_optimizer(optimizer)
    _check_repeats(repeats, min_reflections)
    kinds = parse_plants(plants)
    judge = Judge(judge_model) if judge_model is not None else None
    results = []
    for kind in kinds:
        planted, record = plant(task, kind, seed=seed)
        done: list[_Repeat] = []
        for k in range(repeats):
            with capture_optimizer_model() as capture:
                outcome = compile_task(planted, optimizer, budget=budget, seed=seed + k,
                                       run_dir=repeat_run_dir(out_dir, kind, k), train_size=train_size,
                                       val_size=val_size, cache_dir=cache_dir, progress=progress, **options)
            done.append(_score_repeat(planted, record, optimizer, (k, seed + k), outcome, capture, judge,
                                      text_limit))
            if min_reflections is not None and sum(len(r.scored) for r in done) >= min_reflections:
                break
        results.append(_plant_result(record, done, judge))
    return {
        "schema": SCHEMA,
        "diagnosis": "reflection",
        "task": task.name, "optimizer": optimizer, "seed": seed, "budget": budget,
        "train_size": train_size, "val_size": val_size,
        "repeats": repeats, "min_reflections": min_reflections,
        "interval": {"method": "wilson", "confidence": INTERVAL_CONFIDENCE},
        "task_model": getattr(dspy.settings.lm, "model", None),
        "optimizer_model": getattr(optimizer_lm(), "model", None),
        "judge_model": judge.model if judge else None,
        "plants": results,
        "summary": _summary(results),
    }


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The verdicts by plant kind, at a glance."""
    causes = [r for r in results if r["scored_against"] == "cause"]
    decoy = next((r for r in results if r["scored_against"] == "decoy"), None)
    return {
        "identified": {r["plant"]["kind"]: r["identified"] for r in causes},
        "identification_rate": {r["plant"]["kind"]: r["identification_rate"] for r in causes},
        "identification_interval": {r["plant"]["kind"]: r["identification_interval"] for r in causes},
        "false_identification_rate": decoy["false_identification_rate"] if decoy else None,
        "false_identification_interval": decoy["false_identification_interval"] if decoy else None,
        "reflection_count": {r["plant"]["kind"]: r["reflection_count"] for r in results},
        "lm_calls": sum(r["calls"]["lm_calls"] or 0 for r in results),
    }
