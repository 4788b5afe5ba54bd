"""DSPy's optimizers behind honed's compile interface, proved with a scripted target and optimizer model.

The fake target answers 'positive' unless its instruction says to be careful or its prompt carries
demonstrations; then it is right. The fake optimizer model proposes that careful instruction in
whatever signature asks for one (COPRO, MIPROv2, GEPA, SIMBA each have their own) and fabricates a
schema-valid answer for everything else.
"""

from __future__ import annotations

import importlib.util

import dspy
import pytest
from films import data, program

import honed
from honed.optimizers import read_ledger
from honed.optimizers.dspy_optimizers import DSPY_OPTIMIZERS, DSPyOptimizer, plan
from honed.optimizers.registry import OPTIMIZERS, make_optimizer
from honed.testing import ScriptedLM, fabricate

NAMES = ["labeled", "bootstrap", "copro", "mipro", "gepa", "simba"]
NEEDS_OPTUNA = pytest.mark.skipif(importlib.util.find_spec("optuna") is None,
                                  reason="DSPy's MIPROv2 needs optuna, which is not installed")
RUNNABLE = [pytest.param(name, marks=NEEDS_OPTUNA) if name == "mipro" else name for name in NAMES]
CAREFUL = "Be careful with negative words."
SUMMARY_KEYS = {"optimizer", "baseline_val_score", "val_score", "budget", "budget_used", "lm_calls", "stop_reason",
                "run_dir", "cache_hits", "verification_rate"}


def world(counter: list, *, proposal: object = CAREFUL, demos_hurt: bool = False):
    def answer(messages, schema):
        counter.append(1)
        if schema is None:  # a raw LM call (none of these optimizers should make one through honed)
            return CAREFUL
        props = schema.get("properties", {})
        if "sentiment" in props:
            system, last, has_demos = messages[0]["content"], messages[-1]["content"], len(messages) > 2
            if demos_hurt:
                return {"sentiment": "positive" if has_demos else ("negative" if "bad" in last else "positive")}
            if "careful" in system or has_demos:
                return {"sentiment": "negative" if "bad" in last else "positive"}
            return {"sentiment": "positive"}
        if not isinstance(proposal, str):
            return "this is not JSON"  # an optimizer model that cannot answer the proposal signature
        out = fabricate(schema)
        for key in props:
            if "instruction" in key:
                out[key] = proposal
        if "module_advice" in props:
            out["module_advice"] = {"predict": proposal}
        return out

    return answer


def compile_(name, tmp_path, *, budget, counter=None, **world_options):
    counter = counter if counter is not None else []
    honed.configure(model=ScriptedLM(world(counter, **world_options)), cache_dir=tmp_path / "cache", num_threads=1)
    optimizer = make_optimizer(name, honed.ExactMatch("sentiment"), budget=budget, seed=0, progress=False)
    compiled = optimizer.compile(program(), trainset=data(8), valset=data(4, offset=100), run_dir=tmp_path / "run")
    return optimizer, compiled, counter


@pytest.mark.parametrize("name", RUNNABLE)
def test_each_dspy_optimizer_improves_the_seed_within_its_budget(name, tmp_path):
    optimizer, compiled, counter = compile_(name, tmp_path, budget=40)
    summary = optimizer.result.summary()
    assert summary.keys() >= SUMMARY_KEYS
    assert summary["optimizer"] == name and summary["dspy_optimizer"] == DSPY_OPTIMIZERS[name]
    assert summary["verification_rate"] is None
    assert summary["baseline_val_score"] == 0.5 and summary["val_score"] == 1.0
    assert summary["stop_reason"] in ("completed", "budget")
    assert 0 < summary["budget_used"] <= 40 and len(counter) <= 40
    assert 0 < summary["lm_calls"] <= summary["budget_used"]
    assert optimizer.result.val_score == 1.0 and not hasattr(compiled, "honed_compile")  # typed, on the optimizer
    # The returned program is a clean Classify carrying DSPy's changes, and it really scores what was reported.
    assert isinstance(compiled, honed.Classify) and not hasattr(compiled, "candidate_programs")
    assert honed.evaluate(compiled, data(4, offset=100), honed.ExactMatch("sentiment"), progress=False).score == 1.0
    kinds = [r["kind"] for r in read_ledger(tmp_path / "run" / "ledger.jsonl")]
    assert kinds[:3] == ["validate", "candidate", "optimizer"] and kinds[-1] == "final"


@pytest.mark.parametrize("name", RUNNABLE)
def test_a_small_budget_is_never_exceeded_and_the_seed_is_never_lost(name, tmp_path):
    optimizer, compiled, counter = compile_(name, tmp_path, budget=12)
    summary = optimizer.result.summary()
    assert summary["budget_used"] <= 12 and len(counter) <= 12
    assert summary["val_score"] >= summary["baseline_val_score"]
    assert summary["stop_reason"] in ("completed", "budget")
    log = (tmp_path / "run" / "dspy.log").read_text()  # DSPy's own log and prints, kept beside the ledger
    records = [line for line in log.splitlines() if line[:4].isdigit()]  # log records, not DSPy's prints
    assert not any("call budget of" in line for line in records)  # no line per refused request
    if summary["stop_reason"] == "budget" and summary["optimizer_val_score"] is None:
        assert summary["fell_back_to_seed"] and compiled.predict.signature.instructions == "Classify."


def test_a_spent_budget_inside_dspy_is_reported_as_budget(tmp_path):
    optimizer, _, _ = compile_("bootstrap", tmp_path, budget=9)  # seed 4 + final 4 leave 1 for bootstrapping
    assert optimizer.result.stop_reason == "budget"
    assert optimizer.result.budget_used <= 9
    if importlib.util.find_spec("optuna") is not None:
        optimizer, _, _ = compile_("mipro", tmp_path / "m", budget=12)  # runs out while proposing: no program
        assert optimizer.result.stop_reason == "budget" and optimizer.result.details.fell_back_to_seed


@pytest.mark.parametrize("name", ["copro", pytest.param("mipro", marks=NEEDS_OPTUNA)])
def test_an_optimizer_model_that_cannot_answer_returns_the_seed_with_the_error(name, tmp_path):
    optimizer, compiled, _ = compile_(name, tmp_path, budget=40, proposal=None)
    summary = optimizer.result.summary()
    assert summary["stop_reason"].startswith("error: AdapterParseError")
    assert "\n" not in summary["stop_reason"]
    assert summary["fell_back_to_seed"] and summary["val_score"] == summary["baseline_val_score"]
    assert compiled.predict.signature.instructions == "Classify." and compiled.predict.demos == []
    final = read_ledger(tmp_path / "run" / "ledger.jsonl")[-1]
    assert final["kind"] == "final" and final["stop_reason"] == summary["stop_reason"]


def test_an_unexpected_error_inside_dspy_returns_the_seed(tmp_path, monkeypatch):
    def boom(self, student, **kwargs):
        raise RuntimeError("the optimizer broke\nsecond line")

    monkeypatch.setattr(dspy.teleprompt.SIMBA, "compile", boom)
    optimizer, compiled, _ = compile_("simba", tmp_path, budget=40)
    assert optimizer.result.stop_reason == "error: RuntimeError: the optimizer broke"
    assert optimizer.result.val_score == optimizer.result.baseline_val_score == 0.5
    assert compiled.predict.signature.instructions == "Classify."


def test_a_result_worse_on_validation_than_the_seed_is_not_returned(tmp_path):
    # Demonstrations make this target say 'positive' to everything: labeled few-shot hurts.
    optimizer, compiled, _ = compile_("labeled", tmp_path, budget=40, demos_hurt=True)
    summary = optimizer.result.summary()
    assert summary["baseline_val_score"] == 1.0 and summary["optimizer_val_score"] == 0.5
    assert summary["val_score"] == 1.0 and summary["fell_back_to_seed"]
    assert "below the seed" in summary["note"] and compiled.predict.demos == []


def test_the_six_names_are_registered_beside_reflective():
    assert set(NAMES) | {"reflective"} <= set(OPTIMIZERS)
    for name in NAMES:
        optimizer = make_optimizer(name, honed.ExactMatch("sentiment"), budget=100, seed=3, progress=False)
        assert isinstance(optimizer, DSPyOptimizer) and optimizer.kind == name and optimizer.seed == 3
    with pytest.raises(honed.ConfigError, match="unknown optimizer 'nope'; available: ") as info:
        make_optimizer("nope", honed.ExactMatch("sentiment"), budget=100, seed=0)
    assert all(name in str(info.value) for name in [*NAMES, "reflective"])
    optimizer = make_optimizer("copro", honed.ExactMatch("sentiment"), budget=100, seed=0, width=3)
    with pytest.raises(honed.ConfigError, match="copro has no hyperparameter width; it takes: breadth, depth"):
        optimizer.hyperparameters(8, 4, 1)


@pytest.mark.parametrize("name", NAMES)
def test_plans_fit_the_budget_and_grow_to_dspy_defaults(name):
    small = plan(name, budget=150, n_train=30, n_val=20, predictors=1)
    assert small["affordable"] == 110 and small["estimated_calls"] <= small["affordable"]
    large = plan(name, budget=100_000, n_train=200, n_val=50, predictors=1)
    defaults = {"copro": {"breadth": 10, "depth": 3, "train_size": 200},
                "mipro": {"num_fewshot_candidates": 6, "num_instruct_candidates": 3, "num_trials": 10,
                          "minibatch": False},
                "simba": {"bsize": 32, "num_candidates": 6, "max_steps": 8},
                "bootstrap": {"max_bootstrapped_demos": 4, "max_labeled_demos": 16, "max_rounds": 1},
                "labeled": {"k": 16}}.get(name, {})
    assert defaults.items() <= large.items()
    if name == "gepa":  # capped at what auto="light" would spend
        light = dspy.teleprompt.GEPA.auto_budget(None, num_preds=1, num_candidates=6, valset_size=50)
        assert large["max_metric_calls"] == light


def test_the_run_directory_renders_as_a_report(tmp_path):
    from honed.report import write_report

    optimizer, _, _ = compile_("copro", tmp_path, budget=40)
    page = write_report(optimizer.result.run_dir, tmp_path / "r.html").read_text()
    assert "copro" in page and "completed" in page


@pytest.mark.parametrize(("trials", "steps"), [(2, 2), (3, 3), (4, 3), (6, 3), (8, 4), (9, 5)])
def test_the_mipro_estimate_counts_the_full_evaluations_mipro_runs(trials, steps):
    from honed.optimizers.dspy_optimizers import _mipro_cost

    # MIPROv2's own schedule (`_optimize_prompt_parameters`): the default program's full evaluation, one
    # after every `steps` minibatch trials, and one at the end unless the last trial was one. The default's
    # is the seed's validation pass, answered from the cache, so it costs nothing.
    adjusted = trials + trials // steps + 1 + (1 if trials % steps else 0)
    paid_full_evals = adjusted - trials - 1
    config = {"train_size": 10, "num_fewshot_candidates": 3, "num_instruct_candidates": 2, "num_trials": trials,
              "minibatch": True, "minibatch_size": 5, "minibatch_full_eval_steps": steps,
              "max_bootstrapped_demos": 4}
    without_evals = _mipro_cost({**config, "num_trials": 0}, 20, 1)
    assert _mipro_cost(config, 20, 1) - without_evals == trials * 5 + paid_full_evals * 20


def test_at_budget_100_mipro_gets_three_trials():
    # Two trials drawn by MIPROv2's seeded search can both be the default program (seed 2 did).
    planned = plan("mipro", budget=100, n_train=100, n_val=20, predictors=1)
    assert planned["num_trials"] >= 3 and planned["estimated_calls"] <= planned["affordable"]
