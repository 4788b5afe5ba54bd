"""The search steps every honed optimizer shares: budgeted evaluation of candidates, verification of
an edit on the examples it claims to fix, successive-halving ranking on validation, and ledger logging.

An optimizer's proposer (`honed.optimizers.engine.Proposer`) subclasses `CandidateSearch` and adds only
its own proposals; the engine owns the lifecycle around them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence

import dspy

from honed.evaluate import ExampleResult
from honed.optimizers.candidates import Candidate, build, example_id
from honed.optimizers.objective import ValidationObjective
from honed.optimizers.run import CompileRun
from honed.optimizers.significance import DEFAULT_SIGNIFICANCE, paired_gain
from honed.runs.records import Record, Validate, Verify
from honed.runs.result import GainTest


class CandidateSearch:
    """State of one compile: the run (budget, ledger), the data, and the candidates seen so far."""

    def __init__(self, run: CompileRun, student: dspy.Module, train: list[dspy.Example], val: list[dspy.Example],
                 *, seed: int, beam: int, verify_passing: int, significance: float = DEFAULT_SIGNIFICANCE,
                 balanced_validation: bool = False) -> None:
        self.run, self.student, self.train, self.val = run, student, train, val
        # What candidates are ranked by on validation (`honed.optimizers.objective`): every score this class
        # compares, returns or puts in the beam is this objective; `Validate.score` stays the plain mean.
        self.objective = ValidationObjective(train, val, balance=balanced_validation)
        self.significance = significance
        self.val_outcomes: dict[str, list[float]] = {}  # candidate id -> per-example scores on the full valset
        self.by_id = {example_id(e, i): e for i, e in enumerate(train)}
        self.rng = random.Random(seed)
        self.beam_size = beam
        self.verify_passing = verify_passing
        self.seen: set[str] = set()
        self.stop_reason = "max_rounds"

    def log(self, record: Record) -> None:
        self.run.log(record)

    def evaluate(self, candidate: Candidate, examples: Sequence[dspy.Example]) -> list[ExampleResult] | None:
        """Results in example order, or None (and stop_reason "budget") when the budget cannot pay."""
        if not examples:
            return []
        if not self.run.affords_eval(len(examples)):
            self.stop_reason = "budget"
            return None
        return self.run.evaluate(self.program(candidate), examples).results

    def program(self, candidate: Candidate) -> dspy.Module:
        """The runnable program a candidate stands for: the seed program carrying its state."""
        return build(self.student, candidate, self.by_id)

    def val_score(self, candidate: Candidate, examples: Sequence[dspy.Example], step: str, phase: str
                  ) -> float | None:
        """The candidate's objective on `examples` (validation, or its first quarter), logged as step `step`
        of `phase` ("seed", a round's label); None when the budget cannot pay."""
        results = self.evaluate(candidate, examples)
        if results is None:
            return None
        scores = [r.score for r in results]
        if examples is self.val:
            self.val_outcomes[candidate.id] = scores
        return self.log_validation(step, candidate, scores, phase)

    def log_validation(self, step: str, candidate: Candidate, scores: list[float], phase: str) -> float:
        """Log a candidate's scores on the first `len(scores)` validation examples; returns the objective."""
        objective = self.objective.score(scores)
        balanced = {"balanced": objective} if self.objective.balanced else {}
        self.log(Validate(step=step, candidate=candidate.id, n=len(scores), score=sum(scores) / len(scores),
                          phase=phase, **balanced))
        return objective

    def verify(self, candidate: Candidate, targeted: list[ExampleResult], passing: list[ExampleResult],
               step: str, *, round_no: int, claim_step: str | None = None, edit_step: str | None = None,
               step_id: str | None = None) -> bool | None:
        """Run the candidate on the examples its edit targets and on a few passing ones.

        Holds when it fixes at least one targeted example and fixes more than it breaks. None: no budget.
        `claim_step`/`edit_step` name the record the candidate came from; `step_id` the procedure step.
        """
        check = self.rng.sample(passing, min(self.verify_passing, len(passing)))
        results = self.evaluate(candidate, [r.example for r in targeted] + [r.example for r in check])
        if results is None:
            return None
        fixed_ids = [result_id(r) for r in results[: len(targeted)] if r.score >= 1.0]
        broken_ids = [result_id(r) for r in results[len(targeted):] if r.score < 1.0]
        fixed, regressions = len(fixed_ids), len(broken_ids)
        held = fixed >= 1 and fixed > regressions
        links = {k: v for k, v in (("step_id", step_id), ("claim_step", claim_step), ("edit_step", edit_step))
                 if v is not None}
        self.log(Verify(step=step, candidate=candidate.to_json(), claimed=len(targeted), fixed=fixed,
                        not_fixed=len(targeted) - fixed, regressions=regressions, checked_passing=len(check),
                        held=held, targeted_ids=[result_id(r) for r in targeted], fixed_ids=fixed_ids,
                        checked_ids=[result_id(r) for r in check], broken_ids=broken_ids, round_no=round_no,
                        **links))
        return held

    def rank(self, label: str, admitted: list[Candidate], beam: list[tuple[Candidate, float]]) -> bool:
        """Successive halving on validation: a quarter for every candidate, all of it for the best `beam`.
        Returns False when the budget ran out."""
        quarter = self.val[: max(1, len(self.val) // 4)]
        partial = []
        for candidate in admitted:
            score = self.val_score(candidate, quarter, f"{label}/val-quarter/{candidate.id}", label)
            if score is None:
                return False
            partial.append((score, candidate))
        partial.sort(key=lambda item: -item[0])
        paid_for = True
        for _, candidate in partial[: self.beam_size]:
            score = self.val_score(candidate, self.val, f"{label}/val/{candidate.id}", label)
            if score is None:
                paid_for = False  # the candidates validated so far still join the beam
                break
            beam.append((candidate, score))
        beam.sort(key=lambda item: -item[1])  # stable: earlier (the seed first) wins ties
        del beam[self.beam_size:]
        return paid_for

    def settle(self, beam: list[tuple[Candidate, float]], seed: Candidate, seed_val: float
               ) -> tuple[Candidate, float, GainTest | None]:
        """The program to return: the best beam member whose validation gain over the seed is not
        chance (a paired sign test, see `honed.optimizers.significance`), else the seed.

        Returns the candidate, its validation score, and the sign test of the candidate returned (or,
        when the seed is kept, of the best-scoring candidate; None when none scored above the seed),
        which the final record and the result carry.
        """
        seed_scores = self.val_outcomes[seed.id]
        reported: GainTest | None = None
        for candidate, score in beam:
            if candidate.id == seed.id or score <= seed_val:
                continue
            gain = paired_gain(seed_scores, self.val_outcomes[candidate.id], self.significance)
            test = GainTest(candidate=candidate.id, val_score=score, **gain.to_json())
            reported = reported or test
            if gain.holds:
                return candidate, score, test
        return seed, seed_val, reported

    def race(self, label: str, candidates: list[Candidate], keep: int = 1,
             full_step: Callable[[Candidate], str] | None = None, rivals: Collection[str] = ()
             ) -> list[tuple[Candidate, float]]:
        """Successive halving over validation: every candidate on its first quarter, the better half of them
        on its first half, and so on until at most `keep` have run on all of it. A candidate clearly behind
        stops early, so several can be compared for little more than the cost of validating two.

        Returns the finalists with their full validation scores, best first (ties: the earlier candidate);
        fewer (or none) when the budget ran out. Each rung is logged as `Validate` at its prefix size, the
        last one under `full_step(candidate)` when given (the step id a full validation pass has elsewhere).

        `rivals`: ids of candidates that are alternatives of one another (one procedure with two sets of
        worked examples): after the first rung only the best of them goes on (a tie: the earlier one), so
        an alternative costs a race one first-rung pass, not a place among the ones that go on.
        """
        rungs = self.race_rungs()
        # Two candidates can be one program (two few-shot draws of a small pool picking the same examples):
        # it races once, or its outcomes would be counted twice and no longer pair with the seed's.
        unique: dict[str, Candidate] = {}
        for candidate in candidates:
            unique.setdefault(candidate.id, candidate)
        candidates = list(unique.values())
        scores: dict[str, list[float]] = {c.id: [] for c in candidates}
        alive, done = list(candidates), 0
        for rung, size in enumerate(rungs):
            last = rung == len(rungs) - 1
            ran = []
            for candidate in alive:
                results = self.evaluate(candidate, self.val[done:size])
                if results is None:
                    break
                scores[candidate.id].extend(r.score for r in results)
                step = full_step(candidate) if last and full_step else f"{label}/race{size}/{candidate.id}"
                ran.append((candidate, self.log_validation(step, candidate, scores[candidate.id], label)))
            done = size
            ran.sort(key=lambda item: -item[1])  # stable: the earlier candidate wins a tie
            if last or not ran:
                for candidate, _ in ran:
                    self.val_outcomes[candidate.id] = scores[candidate.id]
                return ran
            if rung == 0:
                rival = next((c.id for c, _ in ran if c.id in rivals), None)
                ran = [(c, s) for c, s in ran if c.id not in rivals or c.id == rival]
            alive = [c for c, _ in ran[: max(keep, math.ceil(len(ran) / 2))]]
        return []

    def race_rungs(self) -> list[int]:
        """The validation prefix sizes a race runs candidates on: a quarter, a half, all of it."""
        return sorted({max(1, len(self.val) // 4), max(1, len(self.val) // 2), len(self.val)})

    def race_cost(self, candidates: int, keep: int = 1, rivals: int = 0) -> int:
        """Calls `race` needs for `candidates` candidates (each rung's new examples, for those still in it),
        `rivals` of them alternatives of which one goes on after the first rung."""
        rungs = self.race_rungs()
        cost, alive, done = 0, candidates, 0
        for rung, size in enumerate(rungs):
            cost += alive * self.run.eval_cost(size - done)
            if rung == 0:
                alive -= max(0, rivals - 1)
            done, alive = size, max(min(keep, alive), math.ceil(alive / 2))
        return cost

    def rank_cost(self, candidates: int = 1) -> int:
        """Calls `rank` needs for `candidates` admitted candidates when only the best gets the full pass:
        what a step must keep in hand so that a verified edit can still reach the beam."""
        return self.run.eval_cost(max(1, len(self.val) // 4) * candidates + len(self.val))


def result_id(result: ExampleResult) -> str:
    """The example's `id` field, as the ledger names examples ("-1" for an example without one)."""
    return example_id(result.example, -1)
