"""DSPy's own optimizers behind honed's compile interface, under the same budget, model, adapter and cache.

`DSPyOptimizer(kind, metric, budget=..., seed=...)` runs one of LabeledFewShot (`labeled`),
BootstrapFewShot (`bootstrap`), COPRO (`copro`), MIPROv2 (`mipro`), GEPA (`gepa`) or SIMBA (`simba`)
on the very program honed would compile, so a benchmark row differs only in the optimizer:

1. the seed program is evaluated on the validation set (honed's `evaluate`, under the budget);
2. the DSPy optimizer runs inside the same `CallBudget`, with its hyperparameters scaled down from DSPy's
   defaults until their estimated cost fits what is left (`plan`); the optimizer model
   (`honed.optimizer_lm()`) is its prompt/reflection/teacher model, `seed` its seed where it takes one;
3. a budget that runs out inside DSPy stops it cleanly (`stop_reason: "budget"`): the result is what DSPy
   returned, or the seed when it returned nothing; any other error returns the seed with
   `stop_reason: "error: ..."` rather than crashing a benchmark;
4. the returned program is evaluated on validation, and is kept only if it is not worse than the seed.

A slice of the budget (one validation pass) is held back from DSPy so that step 4 always fits.
Everything is logged to a run ledger (`honed report` renders it). Two differences from calling DSPy
directly, both so that a spent budget does not throw away finished work: DSPy's `max_errors` is
raised (a refused request is an "error" to DSPy, which by default aborts after 10), and DSPy's stdout
chatter goes to stderr (or, with `progress=False`, to `dspy.log` in the run directory, which also keeps
DSPy's log of the compile) so that `honed compile --json` stays parseable.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import dspy

from honed.errors import ConfigError, ModelRequestBlocked, find_cause
from honed.evaluate import score_of
from honed.models.faults import raise_if_unavailable
from honed.optimizers.budget import BudgetExhausted
from honed.optimizers.candidates import Candidate, PredictorState, example_id
from honed.optimizers.engine import EngineOptimizer, Proposer, Session, Settled
from honed.runs.records import OptimizerCall, Validate
from honed.runs.result import DSPyDetails

DSPY_OPTIMIZERS: dict[str, str] = {
    "labeled": "LabeledFewShot",
    "bootstrap": "BootstrapFewShot",
    "copro": "COPRO",
    "mipro": "MIPROv2",
    "gepa": "GEPA",
    "simba": "SIMBA",
}
DEFAULT_THREADS = 2
DSPY_LOG = "dspy.log"  # in the run directory: what DSPy logged and printed during the compile
# DSPy aborts an evaluation (or a bootstrap) after `max_errors` failed examples; under a budget every
# refused request is such a failure, so the limit is raised and failures score 0 instead.
MAX_ERRORS = 1_000_000


# ------------------------------------------------------------------------------------------- planning


def _first_fitting(configs: list[dict[str, Any]], cost: Callable[[dict[str, Any]], int],
                   affordable: int) -> dict[str, Any]:
    """The first config (most thorough first) whose estimated cost fits, else the cheapest (last) one."""
    for config in configs:
        if cost(config) <= affordable:
            return {**config, "estimated_calls": cost(config)}
    return {**configs[-1], "estimated_calls": cost(configs[-1])}


def _plan_labeled(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    return {"k": 16, "estimated_calls": 0}  # DSPy's default; costs no model call


def _plan_bootstrap(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    # BootstrapFewShot tries training examples in order until max_bootstrapped_demos succeed; the rest of
    # the trainset supplies labeled demos. Its cost is unbounded only for a model that fails everything,
    # and then the budget stops the bootstrap (the labeled demos are still added).
    demos = min(4, affordable // p)
    return {"max_bootstrapped_demos": demos, "max_labeled_demos": 16, "max_rounds": 1,
            "estimated_calls": min(n_train, 2 * demos) * p}


def _copro_cost(c: dict[str, Any], p: int) -> int:
    breadth, depth, m = c["breadth"], c["depth"], c["train_size"]
    proposals = depth * breadth * p  # one request per predictor and depth, `breadth` completions each
    # With several predictors COPRO re-evaluates every candidate so far, at each depth.
    evaluated = depth * breadth if p == 1 else sum(d * breadth for d in range(1, depth + 1)) * p
    return proposals + evaluated * m * p


def _plan_copro(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    shapes = [(10, 3), (8, 3), (6, 3), (6, 2), (5, 2), (4, 2), (3, 2), (2, 2), (3, 1), (2, 1)]
    sizes = sorted({min(n_train, s) for s in (n_train, 40, 30, 20, 15, 10)}, reverse=True)
    floor = min(n_train, 10)
    configs = [{"breadth": b, "depth": d, "train_size": m, "init_temperature": 1.4}
               for b, d in shapes for m in sizes if m >= floor]
    configs += [{"breadth": 2, "depth": 1, "train_size": m, "init_temperature": 1.4}
                for m in range(floor - 1, 0, -1)]
    return _first_fitting(configs, lambda c: _copro_cost(c, p), affordable)


def _mipro_cost(c: dict[str, Any], n_val: int, p: int) -> int:
    train, fewshot, instruct = c["train_size"], c["num_fewshot_candidates"], c["num_instruct_candidates"]
    trials = c["num_trials"]
    # Bootstrapped demo sets (all but zero-shot and labeled-only), each stopping after a few successes.
    bootstrap = max(0, fewshot - 2) * min(train, 2 * c["max_bootstrapped_demos"]) * p
    summary = 2 + min(9, max(0, math.ceil(train / 10) - 1))
    proposals = summary + 3 * instruct * p  # describe program, describe module, propose: per candidate
    if c["minibatch"]:
        # MIPROv2's schedule: the default program's full evaluation (the seed's validation pass: free), one
        # after every `minibatch_full_eval_steps` minibatch trials, and one at the end unless the last trial
        # was one. Counting the default's and an end pass always (as before) overstated the cost by two
        # validation passes, and at budget 100 left MIPROv2 2 trials where 3 fit: at seed 2 both drew the
        # default program, and it returned the seed having spent 32 of its 100 calls.
        full_evals = math.ceil(trials / c["minibatch_full_eval_steps"])
        evals = trials * c["minibatch_size"] * p + full_evals * n_val * p
    else:
        evals = trials * n_val * p  # the default program's full evaluation repeats the seed's (free)
    return bootstrap + proposals + evals


def _plan_mipro(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    zeroshot_vars = 2 * p  # instructions and demos per predictor (MIPROv2's count with demos)
    light_trials = int(max(2 * zeroshot_vars * math.log2(6), 1.5 * 6))  # what auto="light" runs
    small_mb = max(1, min(n_val, max(3, n_val // 4)))
    ladder = [  # (fewshot sets, instruction candidates, trials, minibatch size or None, full-eval steps)
        (6, 3, light_trials, min(35, n_val) if n_val > 50 else None, 5),  # auto="light" as DSPy runs it
        (6, 3, light_trials, small_mb, 5),
        (5, 3, 8, small_mb, 4),
        (4, 2, 6, small_mb, 3),
        (4, 2, 4, small_mb, 3),
        (3, 2, 3, small_mb, 3),
        (3, 2, 2, small_mb, 2),
    ]
    trains = sorted({min(n_train, s) for s in (n_train, 30, 20, 10)}, reverse=True)
    configs = [{"num_fewshot_candidates": f, "num_instruct_candidates": i, "num_trials": t,
                "minibatch": mb is not None, "minibatch_size": mb or n_val, "minibatch_full_eval_steps": steps,
                "max_bootstrapped_demos": 4, "max_labeled_demos": 4, "train_size": m}
               for f, i, t, mb, steps in ladder for m in trains]
    return _first_fitting(configs, lambda c: _mipro_cost(c, n_val, p), affordable)


def _plan_gepa(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    mb = 3  # DSPy's default reflection minibatch
    # GEPA's auto="light" metric-call budget for this program and valset.
    trials = int(max(2 * (p * 2) * math.log2(6), 1.5 * 6))
    light = n_val + 6 * 5 + trials * 35 + ((trials + 1) // 5 + 1 + (1 if trials < 5 else 0)) * n_val
    # Task requests <= (metric calls - the seed's validation pass, which is free) * p, plus one
    # reflection per iteration (>= 2 minibatches each); GEPA checks its limit only between iterations,
    # so leave one iteration (2 minibatches + a full validation pass) of slack.
    fit = int((affordable - 1 + n_val * p) / (p + 1 / (2 * mb))) - (2 * mb + n_val)
    calls = max(1, min(light, fit))
    reflections = calls // (2 * mb) + 1
    return {"max_metric_calls": calls, "reflection_minibatch_size": mb, "use_merge": True,
            "candidate_selection_strategy": "pareto",
            "estimated_calls": max(0, calls + 2 * mb - n_val) * p + reflections}


def _simba_cost(c: dict[str, Any], p: int) -> int:
    b, cands, steps, train = c["bsize"], c["num_candidates"], c["max_steps"], c["train_size"]
    per_step = b * cands * p + (cands + 1) + (cands + 1) * b * p  # trajectories, rules, candidate evals
    final = min(steps + 1, cands + 1) * train * p  # SIMBA's closing evaluation on its whole trainset
    return steps * per_step + final


def _plan_simba(affordable: int, n_train: int, n_val: int, p: int) -> dict[str, Any]:
    ladder = [(32, 6, 8), (16, 6, 6), (16, 4, 4), (8, 4, 4), (8, 3, 3), (6, 3, 2), (4, 3, 2), (4, 2, 2),
              (3, 2, 1), (2, 2, 1), (1, 2, 1)]
    configs = [{"bsize": b, "num_candidates": c, "max_steps": s, "max_demos": 4,
                "train_size": min(n_train, max(b, b * s))}
               for b, c, s in ladder if b <= n_train]
    if not configs:
        configs = [{"bsize": n_train, "num_candidates": 2, "max_steps": 1, "max_demos": 4, "train_size": n_train}]
    return _first_fitting(configs, lambda c: _simba_cost(c, p), affordable)


_PLANNERS: dict[str, Callable[[int, int, int, int], dict[str, Any]]] = {
    "labeled": _plan_labeled, "bootstrap": _plan_bootstrap, "copro": _plan_copro, "mipro": _plan_mipro,
    "gepa": _plan_gepa, "simba": _plan_simba,
}


def plan(kind: str, *, budget: int, n_train: int, n_val: int, predictors: int) -> dict[str, Any]:
    """The hyperparameters `kind` runs with: DSPy's defaults, scaled down until the estimated number of
    model calls fits what the budget leaves after two validation passes (the seed's and the result's)."""
    p = max(1, predictors)
    affordable = max(0, budget - 2 * n_val * p)
    return {**_PLANNERS[kind](affordable, n_train, n_val, p), "affordable": affordable}


# ------------------------------------------------------------------------------------------- metrics


class _ScalarMetric:
    """honed's metric as DSPy's optimizers want it: a float (a metric may return an object with `.score`)."""

    def __init__(self, metric: Callable) -> None:
        self.metric = metric

    def __call__(self, example: Any, prediction: Any, trace: Any = None) -> float:
        return score_of(self.metric(example, prediction))[0]


class _FeedbackMetric:
    """GEPA's five-argument metric; passes on a metric's `.feedback` text when it has one."""

    def __init__(self, metric: Callable) -> None:
        self.metric = metric

    def __call__(self, gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None) -> Any:
        score, feedback = score_of(self.metric(gold, pred))
        return dspy.Prediction(score=score, feedback=feedback) if feedback else score


# ------------------------------------------------------------------------------------------- running


def _build_and_compile(kind: str, hp: dict[str, Any], *, metric: Callable, student: dspy.Module,
                       train: list[dspy.Example], val: list[dspy.Example], opt_lm: dspy.BaseLM, seed: int,
                       num_threads: int) -> dspy.Module:
    """Construct DSPy's optimizer `kind` with hyperparameters `hp` and compile `student` with it."""
    from dspy import teleprompt

    scalar = _ScalarMetric(metric)
    if kind == "labeled":
        return teleprompt.LabeledFewShot(k=hp["k"]).compile(student, trainset=train)
    if kind == "bootstrap":
        optimizer = teleprompt.BootstrapFewShot(
            metric=scalar, teacher_settings={"lm": opt_lm}, max_bootstrapped_demos=hp["max_bootstrapped_demos"],
            max_labeled_demos=hp["max_labeled_demos"], max_rounds=hp["max_rounds"], max_errors=MAX_ERRORS)
        return optimizer.compile(student, trainset=train)
    if kind == "copro":
        optimizer = teleprompt.COPRO(prompt_model=opt_lm, metric=scalar, breadth=hp["breadth"], depth=hp["depth"],
                                     init_temperature=hp["init_temperature"])
        return optimizer.compile(student, trainset=train[: hp["train_size"]],
                                 eval_kwargs={"num_threads": num_threads, "display_progress": False})
    if kind == "mipro":
        if importlib.util.find_spec("optuna") is None:  # DSPy imports it only after bootstrapping and proposing
            raise ImportError("MIPROv2 requires optuna, which is not installed (pip install optuna)")
        optimizer = teleprompt.MIPROv2(
            metric=scalar, prompt_model=opt_lm, task_model=dspy.settings.lm, teacher_settings={"lm": opt_lm},
            max_bootstrapped_demos=hp["max_bootstrapped_demos"], max_labeled_demos=hp["max_labeled_demos"],
            auto=None, num_candidates=hp["num_fewshot_candidates"], num_threads=num_threads, max_errors=MAX_ERRORS,
            seed=seed, verbose=False, track_stats=False)
        optimizer.num_instruct_candidates = hp["num_instruct_candidates"]  # auto="light" splits N this way too
        return optimizer.compile(student, trainset=train[: hp["train_size"]], valset=val, num_trials=hp["num_trials"],
                                 minibatch=hp["minibatch"], minibatch_size=hp["minibatch_size"],
                                 minibatch_full_eval_steps=hp["minibatch_full_eval_steps"])
    if kind == "gepa":
        from dspy.teleprompt.gepa.instruction_proposal import InstructionProposer

        optimizer = teleprompt.GEPA(
            metric=_FeedbackMetric(metric), max_metric_calls=hp["max_metric_calls"],
            reflection_minibatch_size=hp["reflection_minibatch_size"], reflection_lm=opt_lm,
            # GEPA's own proposer, but writing through honed's adapter (its default is a JSONAdapter).
            instruction_proposer=InstructionProposer(adapter=dspy.settings.adapter),
            candidate_selection_strategy=hp["candidate_selection_strategy"], use_merge=hp["use_merge"],
            num_threads=num_threads, seed=seed)
        return optimizer.compile(student, trainset=train, valset=val)
    if kind == "simba":
        optimizer = teleprompt.SIMBA(
            metric=scalar, bsize=hp["bsize"], num_candidates=hp["num_candidates"], max_steps=hp["max_steps"],
            max_demos=hp["max_demos"], prompt_model=opt_lm,
            # SIMBA writes a rollout id into the teacher LM's kwargs: give it a copy, not the shared model.
            teacher_settings={"lm": opt_lm.copy()}, num_threads=num_threads)
        return optimizer.compile(student, trainset=train[: hp["train_size"]], seed=seed)
    raise _unknown_kind(kind)


def _unknown_kind(kind: str) -> ConfigError:
    return ConfigError(f"unknown DSPy optimizer {kind!r}; available: {', '.join(DSPY_OPTIMIZERS)}")


class _DropBudgetNoise(logging.Filter):
    """Drop DSPy's per-example log lines about requests the spent budget refused (there can be hundreds)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is not ours to judge
            return True
        return "call budget of" not in message


@contextlib.contextmanager
def _dspy_output(progress: bool | None, log_path: Path) -> Iterator[None]:
    """Keep stdout for honed: DSPy prints progress, prompts and notes there. Its log (INFO and up, without
    the per-example lines about requests the spent budget refused) and, with `progress=False`, its prints
    go to `log_path`; otherwise prints go to stderr and the log to DSPy's own handler as usual (warnings
    and errors only with `progress=False`)."""
    dspy_logger = logging.getLogger("dspy")
    noise = _DropBudgetNoise()
    handlers = list(dspy_logger.handlers)
    levels = [handler.level for handler in handlers]
    logger_level = dspy_logger.level
    with log_path.open("a", encoding="utf-8") as log_file:
        to_file = logging.StreamHandler(log_file)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        to_file.setLevel(logging.INFO)
        for handler in [*handlers, to_file]:
            handler.addFilter(noise)
        if progress is False:
            for handler in handlers:
                handler.setLevel(max(handler.level, logging.WARNING))
        dspy_logger.addHandler(to_file)
        if logger_level == logging.NOTSET or logger_level > logging.INFO:
            dspy_logger.setLevel(logging.INFO)
        try:
            with contextlib.redirect_stdout(log_file if progress is False else sys.stderr), \
                    warnings.catch_warnings():
                # SIMBA's teacher is the optimizer model at its own (zero) temperature, given a rollout id.
                warnings.filterwarnings("ignore", message="rollout_id has no effect when temperature=0")
                yield
        finally:
            dspy_logger.removeHandler(to_file)
            dspy_logger.setLevel(logger_level)
            for handler, level in zip(handlers, levels, strict=True):
                handler.setLevel(level)
                handler.removeFilter(noise)


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """What went wrong, on one line; a parse failure names the signature and quotes the answer's start."""
    from dspy.utils.exceptions import AdapterParseError

    parse = find_cause(exc, AdapterParseError)
    if parse is not None:
        signature = getattr(getattr(parse, "signature", None), "__name__", "a signature")
        response = " ".join(str(getattr(parse, "lm_response", "")).split())
        text = (f"AdapterParseError: the model's answer to {signature} did not parse "
                f"({len(response)} chars: {response[:80]!r})")
    else:
        lines = str(exc).strip().splitlines()
        text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _demo_id(demo: Any, known: dict[int, str]) -> str:
    if id(demo) in known:
        return known[id(demo)]
    data = dict(demo.items()) if hasattr(demo, "items") else {"demo": str(demo)}
    if "id" in data and not data.get("augmented"):
        return str(data["id"])
    body = json.dumps({k: v for k, v in data.items() if k != "augmented"}, sort_keys=True, default=str)
    return "aug:" + hashlib.sha256(body.encode()).hexdigest()[:10]


def _describe(program: dspy.Module, known: dict[int, str], origin: str, parent: str | None) -> Candidate:
    """A program as a ledger candidate: per predictor its instruction and demonstrations (training example
    ids, or `aug:<hash>` for demonstrations DSPy generated)."""
    states = {name: PredictorState(predictor.signature.instructions,
                                   tuple(_demo_id(d, known) for d in predictor.demos or []))
              for name, predictor in program.named_predictors()}
    return Candidate(states, origin=origin, parent=parent)


def _graft(seed: dspy.Module, result: dspy.Module) -> dspy.Module:
    """A clean copy of the seed carrying each predictor's signature and demos from DSPy's result (DSPy
    hangs candidate lists, trial logs and LM copies on the programs it returns)."""
    program = seed.deepcopy()
    found = dict(result.named_predictors())
    for name, predictor in program.named_predictors():
        source = found.get(name)
        if source is None:
            continue
        predictor.signature = source.signature
        predictor.demos = list(source.demos or [])
    return program


class _DSPyProposer(Proposer):
    """One of DSPy's optimizers as the engine's proposer: it proposes one program, DSPy's result.

    Its seed and its result are described as DSPy leaves them (demonstrations DSPy generated are named
    `aug:<hash>`), and run as the very programs DSPy saw and returned, not rebuilt from that description.
    """

    opt: DSPyOptimizer

    def __init__(self, opt: DSPyOptimizer, session: Session, student: dspy.Module) -> None:
        super().__init__(opt, session, student)
        self.known = {id(e): example_id(e, i) for i, e in enumerate(self.train)}
        self.programs: dict[str, dspy.Module] = {}
        self.optimized: Candidate | None = None
        self.optimized_val: float | None = None
        self.final_eval_calls = 0
        self.note: str | None = None
        self.fell_back = False

    def seed_candidate(self) -> Candidate:
        seed = _describe(self.student, self.known, "seed", None)
        self.programs[seed.id] = self.student.deepcopy()
        return seed

    def program(self, candidate: Candidate) -> dspy.Module:
        return self.programs[candidate.id]

    def search(self, seed: Candidate, seed_val: float, beam: list[tuple[Candidate, float]]) -> None:
        run, budget, hp = self.run, self.run.budget, self.opt.planned
        # 1. DSPy's optimizer, holding back one validation pass for step 2.
        reserve = run.eval_cost(len(self.val))
        phase_limit = max(budget.used, budget.limit - reserve)
        result: dspy.Module | None = None
        error: str | None = None
        started = time.perf_counter()
        used_before = budget.used
        full_limit = budget.limit
        budget.limit = phase_limit
        try:
            output = _dspy_output(self.opt.progress, run.ledger.run_dir / DSPY_LOG)
            with budget.scope(), dspy.context(max_errors=MAX_ERRORS), output:
                result = _build_and_compile(self.opt.kind, hp, metric=self.opt.metric,
                                            student=self.student.deepcopy(), train=self.train, val=self.val,
                                            opt_lm=self.opt_lm, seed=self.opt.seed, num_threads=self.opt.num_threads)
        except Exception as exc:  # the benchmark needs a row with the reason, not a crash
            if find_cause(exc, ModelRequestBlocked):
                raise
            # Seen only when DSPy lets the error through; the validation pass of step 2 catches the rest.
            raise_if_unavailable(exc, self.opt_lm)
            if not (find_cause(exc, BudgetExhausted) or budget.used >= phase_limit):
                error = _one_line(exc)
        finally:
            budget.limit = full_limit
        run.tick()
        if error is not None:
            self.stop_reason = f"error: {error}"
        elif budget.used >= phase_limit:
            self.stop_reason = "budget"
        else:
            self.stop_reason = "completed"
        optimized = _graft(self.programs[seed.id], result) if result is not None else None
        candidate = _describe(optimized, self.known, f"dspy:{self.opt.kind}", seed.id) if optimized else None
        run.log(OptimizerCall(step="optimizer", optimizer=self.opt.kind, dspy_optimizer=DSPY_OPTIMIZERS[self.opt.kind],
                              status="finished" if self.stop_reason == "completed" else "stopped",
                              stop_reason=self.stop_reason, returned_program=candidate is not None,
                              hyperparameters=hp, optimizer_requests=budget.used - used_before,
                              wall_s=round(time.perf_counter() - started, 2),
                              candidate=candidate.to_json() if candidate is not None else None))
        if candidate is None:
            self.note = "DSPy returned no program"
            return
        # 2. DSPy's result on validation.
        self.optimized = candidate
        if candidate.id == seed.id:
            self.optimized_val = seed_val  # the very program the seed is: no need to pay for it twice
            return
        self.programs[candidate.id] = optimized
        paid_before = run.paid_calls()
        try:
            report = run.evaluate(optimized, self.val)
        except Exception as exc:
            if not find_cause(exc, BudgetExhausted):
                raise
            self.note = "the validation pass of DSPy's result did not fit the budget"
            self.stop_reason = "budget"
        else:
            self.optimized_val = report.score
            run.log(Validate(step="final/val", candidate=candidate.id, n=report.n, score=report.score,
                             phase="final"))
        self.final_eval_calls = run.paid_calls() - paid_before

    def choose(self, beam: list[tuple[Candidate, float]], seed: Candidate, seed_val: float) -> Settled:
        """DSPy's result when it is not worse than the seed on validation; otherwise the seed."""
        if self.optimized is not None and self.optimized_val is not None:
            if self.optimized_val >= seed_val:
                return Settled(self.optimized, self.optimized_val, tested=False)
            self.note = (f"DSPy's result scored {self.optimized_val:.4f} on validation, below the seed's "
                         f"{seed_val:.4f}")
        elif self.optimized is None:
            self.note = self.note or "DSPy returned no program"
        self.fell_back = True
        return Settled(seed, seed_val, tested=False)

    def final_fields(self) -> dict[str, Any]:
        return {"optimizer_val_score": self.optimized_val, "fell_back_to_seed": self.fell_back, "note": self.note}

    def details(self) -> DSPyDetails:
        return DSPyDetails(dspy_optimizer=DSPY_OPTIMIZERS[self.opt.kind], hyperparameters=self.opt.planned,
                           optimizer_val_score=self.optimized_val, fell_back_to_seed=self.fell_back,
                           note=self.note, final_eval_calls=self.final_eval_calls)


class DSPyOptimizer(EngineOptimizer):
    """One of DSPy's optimizers (`kind` in `DSPY_OPTIMIZERS`) under honed's budget, ledger and val guard.

    Args:
        kind: labeled, bootstrap, copro, mipro, gepa or simba.
        metric: `metric(example, prediction, trace=None)` -> float in [0, 1] (or an object with `.score`).
        budget: distinct model requests the whole compile may make (task + optimizer model).
        seed: passed to the optimizers that take one (MIPROv2, GEPA, SIMBA) and to the train/val split.
        num_threads: parallel evaluation threads inside DSPy (default 2).
        optimizer_model: LM (or litellm string) for proposals/reflection/teaching; default `honed.optimizer_lm()`.
        **hyperparameters: override planned hyperparameters by name (see `plan`), e.g. `breadth=4`.
    """

    proposer = _DSPyProposer

    def __init__(self, kind: str, metric: Callable, *, budget: int = 600, seed: int = 0,
                 num_threads: int | None = None, optimizer_model: Any = None, progress: bool | None = None,
                 **hyperparameters: Any) -> None:
        super().__init__()
        if kind not in DSPY_OPTIMIZERS:
            raise _unknown_kind(kind)
        if not isinstance(budget, int) or budget < 1:
            raise ConfigError(f"budget must be a positive integer, got {budget!r}")
        self.kind = kind
        self.name = kind
        self.metric = metric
        self.budget = budget
        self.seed = seed
        self.num_threads = num_threads or DEFAULT_THREADS
        self.optimizer_model = optimizer_model
        self.progress = progress
        self.overrides = dict(hyperparameters)
        self.planned: dict[str, Any] = {}

    def hyperparameters(self, n_train: int, n_val: int, predictors: int) -> dict[str, Any]:
        planned = plan(self.kind, budget=self.budget, n_train=n_train, n_val=n_val, predictors=predictors)
        unknown = sorted(set(self.overrides) - set(planned) - {"estimated_calls", "affordable"})
        if unknown:
            names = ", ".join(k for k in planned if k not in ("estimated_calls", "affordable"))
            raise ConfigError(f"{self.kind} has no hyperparameter {', '.join(unknown)}; it takes: {names}")
        return {**planned, **self.overrides}

    def run_settings(self, train: Sequence[dspy.Example], val: Sequence[dspy.Example], predictors: int
                     ) -> dict[str, Any]:
        """The DSPy optimizer, its version and its planned hyperparameters: what the run resumes under."""
        self.planned = self.hyperparameters(len(train), len(val), predictors)
        return {"optimizer": self.kind, "dspy_optimizer": DSPY_OPTIMIZERS[self.kind],
                "dspy_version": getattr(dspy, "__version__", None), "budget": self.budget, "seed": self.seed,
                "num_threads": self.num_threads, "max_errors": MAX_ERRORS, "hyperparameters": self.planned}
