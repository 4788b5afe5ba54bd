"""The compile lifecycle, once: every optimizer is the engine plus a proposer.

The engine opens the run (splits, the optimizer model, settings, ledger, budget), evaluates the seed on
validation, hands the search to the optimizer's `Proposer`, settles what to return (a proposer's own
rule: the paired sign test for honed's optimizers, "not worse than the seed" for DSPy's), writes the
final record and returns a typed `CompileResult`. A proposer only proposes: ReflectiveRefine's turns
verified claims into candidates, BehaviorOptimizer's drafts, demonstrates, observes and repairs, and
DSPy's runs one of DSPy's optimizers. Adding an optimizer is one proposer, its records and a page section.

Why one lifecycle: each optimizer used to open its run, evaluate its seed, word the "budget cannot pay
for one validation pass" refusal and assemble its own summary dict, and the copies had begun to differ.
"""

from __future__ import annotations

import inspect
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import dspy
from dspy.teleprompt import Teleprompter

from honed.errors import ConfigError
from honed.optimizers.budget import CallBudget
from honed.optimizers.candidates import Candidate, PredictorState, seed_candidate
from honed.optimizers.run import CompileRun, model_settings, resolve_optimizer_lm
from honed.optimizers.search import CandidateSearch
from honed.optimizers.significance import DEFAULT_SIGNIFICANCE
from honed.runs.ledger import RunLedger
from honed.runs.records import CandidateRecord, Final
from honed.runs.result import CompileResult, Details, GainTest
from honed.splits import content_hash, split_train_val

# Constructor arguments that are not settings of the search: the metric is code, the models are recorded
# by identity (`model_settings`), and threads and the progress bar do not change what is computed.
_NOT_SETTINGS = ("self", "metric", "optimizer_model", "num_threads", "progress")


@dataclass
class Session:
    """An opened compile: the run (budget, ledger), the data, the optimizer model, the predictors."""

    run: CompileRun
    train: list[dspy.Example]
    val: list[dspy.Example]
    opt_lm: dspy.BaseLM
    order: list[str]  # predictor names, in program order


@dataclass
class Settled:
    """What the compile returns and on what grounds. `gain` is recorded only when `tested` (the
    proposer's rule is a sign test); DSPy's rule keeps its result when it is not worse than the seed."""

    candidate: Candidate
    val_score: float
    gain: GainTest | None = None
    tested: bool = True


class Proposer(CandidateSearch):
    """An optimizer's search, given the seed and its validation score: extend the beam with candidates
    it proposes, verifies and ranks (the toolkit is `CandidateSearch`), and report its own details."""

    def __init__(self, opt: EngineOptimizer, session: Session, student: dspy.Module) -> None:
        super().__init__(session.run, student, session.train, session.val, seed=opt.seed,
                         beam=getattr(opt, "beam", 1), verify_passing=getattr(opt, "verify_passing", 0),
                         significance=getattr(opt, "significance", DEFAULT_SIGNIFICANCE),
                         balanced_validation=getattr(opt, "balanced_validation", False))
        self.opt, self.opt_lm, self.order = opt, session.opt_lm, session.order

    def seed_candidate(self) -> Candidate:
        """The program as given, as a candidate."""
        return seed_candidate(self.student, self.by_id)

    def search(self, seed: Candidate, seed_val: float, beam: list[tuple[Candidate, float]]) -> None:
        raise NotImplementedError

    def labeled_candidate(self, parent: Candidate, predictor: str, ids: tuple[str, ...], origin: str) -> Candidate:
        """`parent` with the training examples `ids` as answer-only demonstrations of `predictor` (what
        LabeledFewShot builds), as a candidate that competes in the beam (see `honed.optimizers.demo_sets`)."""
        state = parent.predictors[predictor]
        return parent.with_predictor(predictor, PredictorState(state.instructions, ids), origin)

    def choose(self, beam: list[tuple[Candidate, float]], seed: Candidate, seed_val: float) -> Settled:
        """The default rule: the best beam member whose gain over the seed passes the sign test."""
        candidate, score, gain = self.settle(beam, seed, seed_val)
        return Settled(candidate, score, gain)

    def final_fields(self) -> dict[str, Any]:
        """This optimizer's fields of the final record."""
        return {}

    def details(self) -> Details:
        raise NotImplementedError


class EngineOptimizer(Teleprompter):
    """A DSPy `Teleprompter` whose `compile` is the engine's, with `proposer` doing the search.

    Subclasses set `name`, `proposer`, `revision`, and the attributes the engine reads: `metric`, `optimizer_model`,
    `budget`, `seed`, `num_threads`, `progress`. After `compile`, `result` holds the `CompileResult`.
    """

    name: ClassVar[str] = ""
    proposer: ClassVar[type[Proposer]]
    # The search's revision, in the run's settings: bumped when a change of the search (not of its settings)
    # changes what a compile does, so that a rerun gets a run directory of its own instead of resuming, and
    # mixing its records into, a ledger the earlier search wrote.
    revision: ClassVar[int] = 1
    result: CompileResult | None = None

    def run_settings(self, train: Sequence[dspy.Example], val: Sequence[dspy.Example], predictors: int
                     ) -> dict[str, Any]:
        """What this optimizer adds to the run's settings (the run directory refuses to resume under
        others): by default its name and constructor arguments."""
        return declared_settings(self)

    def compile(self, student: dspy.Module, *, trainset: Sequence[dspy.Example], teacher: Any = None,
                valset: Sequence[dspy.Example] | None = None, run_dir: str | Path | None = None,
                task: str | None = None, **kwargs: Any) -> dspy.Module:
        """`run_dir`: the ledger and resume point (default: a new temporary folder). `task`: a name
        recorded in the run's settings and shown by `honed report`. The result is in `self.result`."""
        session = open_session(self, student, trainset, valset, run_dir, task)
        try:
            program, self.result = Engine(self, session, self.proposer(self, session, student)).run()
        finally:
            session.run.close()
        return program


def declared_settings(optimizer: Any) -> dict[str, Any]:
    """The optimizer's name and its constructor's arguments as set: the settings a run records, read from
    `__init__`'s signature so that they are never restated by hand (and a new argument is never missed)."""
    names = [n for n in inspect.signature(type(optimizer).__init__).parameters if n not in _NOT_SETTINGS]
    return {"optimizer": optimizer.name, "revision": optimizer.revision, **{n: getattr(optimizer, n) for n in names}}


def open_session(optimizer: EngineOptimizer, student: dspy.Module, trainset: Sequence[dspy.Example],
                 valset: Sequence[dspy.Example] | None, run_dir: str | Path | None, task: str | None) -> Session:
    """Everything a compile starts with: the splits, the optimizer model, the ledger, the budget, the run."""
    if not trainset:
        raise ConfigError(f"{optimizer.name} needs a non-empty trainset")
    train, val = split_train_val(trainset, valset, seed=optimizer.seed)
    opt_lm = resolve_optimizer_lm(optimizer.optimizer_model)
    order = [name for name, _ in student.named_predictors()]
    settings = {**optimizer.run_settings(train, val, len(order)), **model_settings(dspy.settings.lm, opt_lm),
                "train_hash": content_hash(train), "val_hash": content_hash(val)}
    if task:
        settings["task"] = task
    ledger = RunLedger(run_dir or tempfile.mkdtemp(prefix="honed-run-"), settings)
    run = CompileRun(budget=CallBudget(optimizer.budget), ledger=ledger, metric=optimizer.metric,
                     predictors=len(order), progress=optimizer.progress, num_threads=optimizer.num_threads)
    return Session(run, list(train), list(val), opt_lm, order)


class Engine:
    """One compile's lifecycle around its proposer."""

    def __init__(self, optimizer: EngineOptimizer, session: Session, proposer: Proposer) -> None:
        self.optimizer, self.session, self.proposer = optimizer, session, proposer

    def run(self) -> tuple[dspy.Module, CompileResult]:
        run, val, proposer = self.session.run, self.session.val, self.proposer
        seed = proposer.seed_candidate()
        proposer.seen.add(seed.id)
        seed_val = proposer.val_score(seed, val, "seed/val", "seed")  # None: the budget cannot pay for it
        if seed_val is None:
            raise ConfigError(f"budget {self.optimizer.budget} cannot pay for one validation pass "
                              f"({run.eval_cost(len(val))} calls); raise --budget or use a smaller valset")
        run.log(CandidateRecord(step="seed", candidate=seed.to_json(), val_score=seed_val))
        beam: list[tuple[Candidate, float]] = [(seed, seed_val)]
        proposer.search(seed, seed_val, beam)
        settled = proposer.choose(beam, seed, seed_val)
        gain = {"gain_over_seed": settled.gain.model_dump() if settled.gain else None} if settled.tested else {}
        run.log(Final(step="final", candidate=settled.candidate.to_json(), val_score=settled.val_score,
                      baseline_val_score=seed_val, val_objective=proposer.objective.name, **gain,
                      stop_reason=proposer.stop_reason, **proposer.final_fields()))
        result = CompileResult(
            optimizer=self.optimizer.name, baseline_val_score=seed_val, val_score=settled.val_score,
            val_objective=proposer.objective.name,
            gain_over_seed=settled.gain, stop_reason=proposer.stop_reason, budget=self.optimizer.budget,
            budget_used=run.budget.used, lm_calls=run.paid_calls(), cache_hits=run.cache_hits(),
            run_dir=str(run.ledger.run_dir), wall_s=round(run.elapsed(), 2),
            candidate=settled.candidate.to_json(), details=proposer.details())
        return proposer.program(settled.candidate), result
