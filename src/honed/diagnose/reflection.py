"""Question 1 of Ma et al. (2024): does the optimizer's reflection find the true cause of the errors, or
repeat its own prior about the task?

For each plant (`honed.diagnose.plants`) the optimizer compiles the planted task (`compile_task`, so budget,
splits and run directories are those of `honed compile`), with its model captured
(`honed.diagnose.capture`). The reflections are read from the ledger for honed's own optimizers (the fields
that are reflections) and from the captured optimizer-model outputs for DSPy's; each is scored by keyword
(`honed.diagnose.scoring`) and, optionally, by a judge model. For the distractor, which has no cause, the
same scoring against its decoy word measures false identification.

The result is one JSON object (schema `honed.diagnose.reflection/1`, documented in `diagnose/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dspy

from honed.compiling import DEFAULT_TRAIN_SIZE, DEFAULT_VAL_SIZE, CompileOutcome, compile_task
from honed.diagnose.capture import OptimizerCapture, capture_optimizer_model
from honed.diagnose.extract import LEDGER_OPTIMIZERS, ledger_reflections
from honed.diagnose.judge import Judge
from honed.diagnose.plants import PLANT_KINDS, Plant, PlantError, plant
from honed.diagnose.scoring import TEXT_LIMIT, EchoStripper, ScoredReflection, score
from honed.errors import ConfigError
from honed.optimizers.ledger import LEDGER_FILE, read_ledger
from honed.optimizers.registry import OPTIMIZERS
from honed.programs.tasks import Task

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


def _plant_result(planted: Task, record: Plant, optimizer: str, outcome: CompileOutcome,
                  capture: OptimizerCapture, judge: Judge | None, text_limit: int) -> dict[str, Any]:
    decoy = record.kind == "distractor"
    keywords = record.decoy_keywords if decoy else record.keywords
    stripper = EchoStripper(str(e[planted.input_field]) for e in planted.train)
    run_dir = Path(outcome.summary["run_dir"])
    captured, task_answers = capture.reflections(_output_fields(planted))
    if optimizer in LEDGER_OPTIMIZERS:
        source = "ledger"
        raw = ledger_reflections(read_ledger(run_dir / LEDGER_FILE))
    else:
        source = "optimizer_model"
        raw = [("response", label, text) for label, text in captured]
    scored: list[ScoredReflection] = []
    judge_calls_before = judge.calls if judge else 0
    cause = (_decoy_cause(record) if record.decoy_keywords else None) if decoy else record.description
    for kind, step, text in raw:
        item = score(kind, step, text, keywords, stripper, text_limit)
        if judge is not None and cause is not None:
            item.judge = judge(cause, stripper.strip(text))
        scored.append(item)
    named = sum(r.named for r in scored)
    uniform = [score("response", label, text, keywords, stripper, text_limit) for label, text in captured]
    judged = [r.judge for r in scored if r.judge is not None]
    judge_summary = None
    if judge is not None:
        judge_summary = {"model": judge.model, "verdicts": len(judged), "naming": sum(judged),
                         "rate": _rate(sum(judged), len(judged)), "any": any(judged) if judged else None,
                         "calls": judge.calls - judge_calls_before}
    rate = _rate(named, len(scored))
    summary = outcome.summary
    return {
        "plant": record.model_dump(mode="json"),
        "scored_against": "decoy" if decoy else "cause",
        "keywords": keywords,
        "source": source,
        "reflections": [r.model_dump(mode="json") for r in scored],
        "reflection_count": len(scored),
        "naming": named,
        "identification_rate": None if decoy else rate,
        "identified": None if decoy else named > 0,
        "false_identification_rate": rate if decoy else None,
        "falsely_identified": (named > 0) if decoy else None,
        "judge": judge_summary,
        "optimizer_outputs": {"calls": len(capture.calls), "failed_calls": capture.failed,
                              "task_answers": task_answers, "reflections": len(uniform),
                              "naming": sum(r.named for r in uniform),
                              "rate": _rate(sum(r.named for r in uniform), len(uniform))},
        "compile": {k: summary.get(k) for k in _COMPILE_KEYS if k in summary},
        "calls": {"lm_calls": summary.get("lm_calls"), "budget_used": summary.get("budget_used"),
                  "budget": summary.get("budget"), "cache_hits": summary.get("cache_hits"),
                  "optimizer_calls": len(capture.calls),
                  "judge_calls": judge_summary["calls"] if judge_summary else 0},
    }


def diagnose_reflection(task: Task, optimizer: str, *, plants: str | Sequence[str] = PLANT_KINDS,
                        budget: int = 300, seed: int = 0, train_size: int = DEFAULT_TRAIN_SIZE,
                        val_size: int = DEFAULT_VAL_SIZE, judge_model: str | dspy.BaseLM | None = None,
                        out_dir: str | Path | None = None, cache_dir: Path | None = None,
                        progress: bool | None = False, text_limit: int = TEXT_LIMIT,
                        **options: Any) -> dict[str, Any]:
    """Compile each planted variant of `task` with `optimizer` and score its reflections against the plant.

    Run directories go to `<out_dir>/runs/<plant>` (default: under the cache directory, as for `honed
    compile`), so a repeated diagnosis replays from the cache. `options` go to the optimizer."""
    if optimizer not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {optimizer!r}; available: {', '.join(sorted(OPTIMIZERS))}")
    kinds = parse_plants(plants)
    judge = Judge(judge_model) if judge_model is not None else None
    results = []
    for kind in kinds:
        planted, record = plant(task, kind, seed=seed)
        run_dir = Path(out_dir) / "runs" / kind if out_dir is not None else None
        with capture_optimizer_model() as capture:
            outcome = compile_task(planted, optimizer, budget=budget, seed=seed, run_dir=run_dir,
                                   train_size=train_size, val_size=val_size, cache_dir=cache_dir,
                                   progress=progress, **options)
        results.append(_plant_result(planted, record, optimizer, outcome, capture, judge, text_limit))
    from honed.config import optimizer_lm

    return {
        "schema": SCHEMA,
        "diagnosis": "reflection",
        "task": task.name, "optimizer": optimizer, "seed": seed, "budget": budget,
        "train_size": train_size, "val_size": val_size,
        "task_model": getattr(dspy.settings.lm, "model", None),
        "optimizer_model": getattr(optimizer_lm(), "model", None),
        "judge_model": judge.model if judge else None,
        "plants": results,
        "summary": {
            "identified": {r["plant"]["kind"]: r["identified"] for r in results if r["scored_against"] == "cause"},
            "identification_rate": {r["plant"]["kind"]: r["identification_rate"] for r in results
                                    if r["scored_against"] == "cause"},
            "false_identification_rate": next((r["false_identification_rate"] for r in results
                                               if r["scored_against"] == "decoy"), None),
            "lm_calls": sum(r["calls"]["lm_calls"] or 0 for r in results),
        },
    }
