"""ReflectiveRefine: reflection-refinement whose reflections must prove themselves on the target model.

Each round: run the best program on a training minibatch; attribute each failure to the predictor
whose behavior first diverges; ask the optimizer model for structured claims (cause, which shown
mistakes it explains, a new instruction, whether to show the examples as demonstrations); turn each
claim into candidates (a rewritten instruction, and/or the cited examples added as demonstrations);
**verify** each candidate on the very examples its claim says it fixes plus a few passing ones, and
admit it only if the claim held; rank admitted candidates on validation by successive halving; keep a
beam. The seed program stays in the running, so the result is never worse on validation than the seed,
and a candidate replaces it only when its validation gain passes a paired sign test (`significance`).

The verification rate (claims that held / claims made) answers, for every run, whether the optimizer's
reflections change what the target model does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from honed.errors import ConfigError, find_cause
from honed.evaluate import ExampleResult, stops_evaluation
from honed.optimizers.attribution import attribute, gold_labels
from honed.optimizers.candidates import Candidate, PredictorState
from honed.optimizers.engine import EngineOptimizer, Proposer, Session
from honed.optimizers.search import result_id
from honed.optimizers.significance import DEFAULT_SIGNIFICANCE, check_significance
from honed.programs.metrics import normalize
from honed.runs.records import Claim, Minibatch
from honed.runs.result import ReflectiveDetails
from honed.signatures.reflect import ProposeFix


class _ReflectiveProposer(Proposer):
    """One ReflectiveRefine compile's search (kept apart so the optimizer object stays reusable)."""

    opt: ReflectiveRefine

    def __init__(self, opt: ReflectiveRefine, session: Session, student: dspy.Module) -> None:
        super().__init__(opt, session, student)
        self.claims = 0
        self.held = 0

    # -- the loop ------------------------------------------------------------------------------------
    def search(self, seed: Candidate, seed_val: float, beam: list[tuple[Candidate, float]]) -> None:
        for round_no in range(1, self.opt.max_rounds + 1):
            if not self.round(round_no, beam):
                break
            self.run.tick(round=round_no, best=f"{beam[0][1]:.3f}")

    def final_fields(self) -> dict[str, Any]:
        return {"claims": self.claims, "claims_held": self.held}

    def details(self) -> ReflectiveDetails:
        return ReflectiveDetails(claims=self.claims, claims_held=self.held)

    def round(self, round_no: int, beam: list[tuple[Candidate, float]]) -> bool:
        """One round; returns False when the compile must stop (budget)."""
        parent = beam[0][0]
        batch = self.rng.sample(self.train, min(self.opt.minibatch, len(self.train)))
        results = self.evaluate(parent, batch)
        if results is None:
            return False
        failures = [r for r in results if r.score < 1.0]
        passing = [r for r in results if r.score >= 1.0]
        self.log(Minibatch(step=f"r{round_no}/minibatch", candidate=parent.id, n=len(results),
                           failures=len(failures), score=sum(r.score for r in results) / len(results),
                           round_no=round_no))
        if not failures:
            return True
        target = self.target_predictor(failures)
        mine = [r for r in failures if attribute(r, self.order) == target]
        admitted: list[Candidate] = []
        shown_before: list[list[str]] = []
        for claim_no in range(self.opt.claims_per_round):
            shown = self.window(mine, claim_no)
            ids = [result_id(r) for r in shown]
            if ids in shown_before:
                break
            shown_before.append(ids)
            if not self.run.budget.affords(1):
                self.stop_reason = "budget"
                return False
            step = f"r{round_no}/claim{claim_no}"
            claim = self.reflect(parent, target, shown, step, self.sampling(round_no, claim_no),
                                 round_no=round_no, claim_no=claim_no)
            if claim is None:
                continue
            self.claims += 1
            cited = self.cited(claim, shown)
            held_any = False
            for candidate in self.candidates(parent, target, claim, cited):
                if candidate.id in self.seen:
                    continue
                self.seen.add(candidate.id)
                verdict = self.verify(candidate, cited, passing, f"{step}/verify/{candidate.id}", round_no=round_no,
                                      claim_step=step)
                if verdict is None:
                    return False
                if verdict:
                    held_any = True
                    admitted.append(candidate)
            self.held += held_any
        return self.rank(f"r{round_no}", admitted, beam) if admitted else True

    def target_predictor(self, failures: list[ExampleResult]) -> str:
        """The predictor blamed for the most failures (ties: the earliest)."""
        counts = {name: 0 for name in self.order}
        for result in failures:
            blamed = attribute(result, self.order)
            counts[blamed] = counts.get(blamed, 0) + 1
        return max(self.order, key=lambda name: (counts[name], -self.order.index(name)))

    def window(self, failures: list[ExampleResult], claim_no: int) -> list[ExampleResult]:
        """The failures shown to reflection `claim_no`: consecutive, wrapping windows."""
        k = min(self.opt.errors_per_claim, len(failures))
        start = claim_no * k
        return [failures[(start + j) % len(failures)] for j in range(k)]

    # -- reflection, candidates, verification, ranking ------------------------------------------------
    def sampling(self, round_no: int, claim_no: int) -> dict[str, Any]:
        """The first claim of a round is greedy; later ones sample, each with its own seed (so they
        differ from each other, yet a rerun makes the very same requests)."""
        if claim_no == 0:
            return {}
        return {"temperature": self.opt.reflection_temperature,
                "seed": self.opt.seed * 100_003 + round_no * 101 + claim_no}

    def reflect(self, parent: Candidate, target: str, shown: list[ExampleResult], step: str,
                config: dict[str, Any], *, round_no: int, claim_no: int) -> Any:
        mistakes = "\n".join(self.describe(i, r, target) for i, r in enumerate(shown, start=1))
        instruction = parent.predictors[target].instructions
        propose = dspy.Predict(ProposeFix)
        try:
            with dspy.context(lm=self.opt_lm):
                claim = self.run.call(lambda: propose(instruction=instruction, mistakes=mistakes, config=config))
        except Exception as exc:  # a failed reflection is counted and skipped; the compile goes on
            if stops_evaluation(exc):  # requests blocked, budget spent, provider unreachable
                raise
            parse = find_cause(exc, AdapterParseError)
            self.log(Claim(step=step, predictor=target, shown=[result_id(r) for r in shown],
                           error=f"{type(exc).__name__}: {exc}".splitlines()[0],
                           response=getattr(parse, "lm_response", None), round_no=round_no, claim_no=claim_no))
            return None
        self.log(Claim(step=step, predictor=target, shown=[result_id(r) for r in shown], cause=claim.cause,
                       explains=list(claim.explains), new_instruction=claim.new_instruction,
                       show_examples=bool(claim.show_examples), round_no=round_no, claim_no=claim_no))
        return claim

    def describe(self, number: int, result: ExampleResult, target: str) -> str:
        step = next((s for s in result.trace if s.predictor == target), None)
        inputs = step.inputs if step else result.example.inputs().toDict()
        lines = [f"{number}. " + "; ".join(f"{k}: {v}" for k, v in inputs.items())]
        answer = ", ".join(f"{k}: {v}" for k, v in step.outputs.items()) if step else "(no valid answer)"
        lines.append(f"   model answered: {answer}")
        lines.append("   correct answer: " + ", ".join(f"{k}: {v}" for k, v in gold_labels(result).items()))
        if result.feedback:
            lines.append(f"   feedback: {result.feedback}")
        return "\n".join(lines)

    def cited(self, claim: Any, shown: list[ExampleResult]) -> list[ExampleResult]:
        picked = [shown[i - 1] for i in dict.fromkeys(claim.explains) if isinstance(i, int) and 1 <= i <= len(shown)]
        return picked or list(shown)

    def candidates(self, parent: Candidate, target: str, claim: Any, cited: list[ExampleResult]) -> list[Candidate]:
        state = parent.predictors[target]
        made = []
        text = (claim.new_instruction or "").strip()
        if len(text) >= 8 and normalize(text) != normalize(state.instructions):
            made.append(parent.with_predictor(target, PredictorState(text, state.demo_ids), "instruction"))
        if claim.show_examples or not made:
            new_ids = [key for key in map(result_id, cited) if key in self.by_id]
            demos = tuple(dict.fromkeys([*state.demo_ids, *new_ids]))[-self.opt.max_demos:]
            if demos != state.demo_ids:
                made.append(parent.with_predictor(target, PredictorState(state.instructions, demos), "demonstrations"))
        return made


class ReflectiveRefine(EngineOptimizer):
    """Compile any `dspy.Module` by verified reflection on the target model's errors.

    Args:
        metric: `metric(example, prediction, trace=None)` -> float in [0, 1] (or an object with
            `.score` and optional `.feedback`, which is shown to the optimizer model).
        optimizer_model: LM (or litellm string) that reflects; default: `honed.configure`'s optimizer model.
        budget: distinct model requests the whole compile may make (task + optimizer model).
        beam: programs kept between rounds. minibatch: training examples run per round.
        claims_per_round: reflections asked per round (the first greedy, the others sampled at
            `reflection_temperature` with fixed seeds). errors_per_claim: mistakes shown per reflection.
        verify_passing: passing examples re-run to catch regressions. max_demos: demonstrations per predictor.
        significance: the returned program replaces the seed only when a one-sided paired sign test
            on validation puts its gain at p <= this (1.0: any higher validation score will do).
        balanced_validation: rank on validation by the mean with each answer form weighted equally where
            its answers fall into a few forms (`honed.optimizers.objective`); False: the plain mean.
    """

    name = "reflective"
    proposer = _ReflectiveProposer
    # The search is revision 1 (the engine's default). 2, 3 and 4 were measured and not adopted, and their run
    # directories exist: the next is 5 (benchmarks/results/reflective_r4_not_adopted/).

    def __init__(self, metric: Callable, *, optimizer_model: Any = None, budget: int = 600, beam: int = 4,
                 minibatch: int = 16, claims_per_round: int = 2, errors_per_claim: int = 4, verify_passing: int = 4,
                 max_demos: int = 4, max_rounds: int = 20, reflection_temperature: float = 0.8, seed: int = 0,
                 significance: float = DEFAULT_SIGNIFICANCE, balanced_validation: bool = True,
                 num_threads: int | None = None, progress: bool | None = None) -> None:
        super().__init__()
        for label, value in (("budget", budget), ("beam", beam), ("minibatch", minibatch),
                             ("claims_per_round", claims_per_round), ("errors_per_claim", errors_per_claim),
                             ("max_rounds", max_rounds)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{label} must be a positive integer, got {value!r}")
        self.metric = metric
        self.optimizer_model = optimizer_model
        self.budget = budget
        self.beam = beam
        self.minibatch = minibatch
        self.claims_per_round = claims_per_round
        self.errors_per_claim = errors_per_claim
        self.verify_passing = verify_passing
        self.max_demos = max_demos
        self.max_rounds = max_rounds
        self.reflection_temperature = reflection_temperature
        self.seed = seed
        self.significance = check_significance(significance)
        self.balanced_validation = balanced_validation
        self.num_threads = num_threads
        self.progress = progress
