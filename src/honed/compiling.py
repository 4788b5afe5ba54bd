"""Compile a task's program with a named optimizer: fixed seeded splits, a run directory, a summary.

Shared by `honed compile` and the benchmarks so that both split data and name run directories the same way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy

from honed.config import default_cache_dir, optimizer_lm
from honed.errors import ConfigError
from honed.models.identity import lm_identity
from honed.optimizers.registry import make_optimizer
from honed.programs.tasks import Task
from honed.runs.result import CompileResult
from honed.splits import content_hash, seeded_split

DEFAULT_TRAIN_SIZE = 200
DEFAULT_VAL_SIZE = 50
# The validation set is capped so that the budget pays for this many passes over it (the seed and at least
# two candidates): at budget 100 and 50 validation examples, the seed's pass and one candidate's left
# nothing for a refinement step, and `behavior` returned the seed having ranked only its draft.
VALIDATION_PASSES = 3


@dataclass
class CompileOutcome:
    """A compiled task: the program, the optimizer's typed result, and the task's side of the compile
    (its name, the split sizes, a note when validation was capped to fit the budget)."""

    program: dspy.Module
    result: CompileResult
    task: str
    seed: int
    train_size: int
    val_size: int
    val_size_note: str | None = None

    @property
    def summary(self) -> dict[str, Any]:
        """The compile as one flat JSON object (`honed compile --json`, the benchmarks' rows)."""
        shown = {"task": self.task, "optimizer": self.result.optimizer, "seed": self.seed,
                 "train_size": self.train_size, "val_size": self.val_size, **self.result.summary()}
        if self.val_size_note:
            shown["val_size_note"] = self.val_size_note
        return shown

    def provenance(self) -> dict[str, Any]:
        """The summary as an artifact records it: everything but the candidate (the artifact *is* the program)."""
        return {key: value for key, value in self.summary.items() if key != "candidate"}


def task_splits(task: Task, *, train_size: int = DEFAULT_TRAIN_SIZE, val_size: int = DEFAULT_VAL_SIZE,
                seed: int = 0) -> tuple[list[dspy.Example], list[dspy.Example]]:
    """Disjoint train and validation sets drawn (seeded) from the task's training split."""
    pool = list(task.train)
    if len(pool) < 2:
        raise ConfigError(f"task {task.name} has {len(pool)} training example(s); compiling needs at least 2")
    val, rest = seeded_split(pool, min(val_size, max(1, len(pool) // 3)), seed=seed)
    return rest[:train_size], val


def affordable_val_size(val_size: int, budget: int, predictors: int) -> int:
    """The validation size a budget of `budget` calls can rank with: at most `VALIDATION_PASSES` passes."""
    return max(1, min(val_size, budget // (VALIDATION_PASSES * max(1, predictors))))


def default_run_dir(task: Task, optimizer: str, settings: dict[str, Any], cache_dir: Path | None) -> Path:
    """A run directory named by what is compiled, so an identical compile finds (and resumes) its run."""
    key = json.dumps({"task": task.name, "optimizer": optimizer, **settings}, sort_keys=True, default=str)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    base = cache_dir or default_cache_dir()
    return Path(base) / "runs" / f"{task.name.replace('/', '_')}-{optimizer}-{digest}"


def compile_task(task: Task, optimizer: str, *, budget: int, seed: int = 0, run_dir: str | Path | None = None,
                 train_size: int = DEFAULT_TRAIN_SIZE, val_size: int = DEFAULT_VAL_SIZE,
                 cache_dir: Path | None = None, progress: bool | None = None, **options: Any) -> CompileOutcome:
    asked_val_size = val_size
    predictors = len(task.program().named_predictors())
    val_size = affordable_val_size(val_size, budget, predictors)
    train, val = task_splits(task, train_size=train_size, val_size=val_size, seed=seed)
    lm = dspy.settings.lm
    opt_lm = options.get("optimizer_model") or optimizer_lm()
    # Both models' identities (file hash or endpoint), not only their strings, name the default run
    # directory: a different optimizer model, or a changed file behind the same string, starts its own run.
    settings = {"budget": budget, "seed": seed, "train": content_hash(train), "val": content_hash(val),
                "model": getattr(lm, "model", None), "model_identity": lm_identity(lm),
                "optimizer_model": opt_lm if isinstance(opt_lm, str) else getattr(opt_lm, "model", None),
                "optimizer_identity": lm_identity(opt_lm), **options}
    teleprompter = make_optimizer(optimizer, task.metric, budget=budget, seed=seed, progress=progress, **options)
    run_settings = getattr(teleprompter, "run_settings", None)
    if callable(run_settings):
        # Every setting the run directory records (a DSPy optimizer's include the hyperparameters planned
        # from the budget and the split sizes) names it, so that a new default or plan (say, after an
        # upgrade) gets a fresh run instead of a refusal to resume one made under other settings.
        settings = {**run_settings(train, val, predictors), **settings}
    directory = Path(run_dir) if run_dir else default_run_dir(task, optimizer, settings, cache_dir)
    program = teleprompter.compile(task.program(), trainset=train, valset=val, run_dir=directory,
                                   task=task.name)
    note = None
    if val_size < asked_val_size:
        note = (f"validation capped at {val_size} of {asked_val_size} examples so that a budget "
                f"of {budget} calls pays for {VALIDATION_PASSES} passes over it")
    return CompileOutcome(program, teleprompter.result, task.name, seed, len(train), len(val), note)
