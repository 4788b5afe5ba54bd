"""ReflectiveRefine's guarantees, proved with a scripted target and optimizer model."""

from __future__ import annotations

import dspy
import pytest
from films import data, program

import honed
from honed.cache import HonedCache
from honed.evaluate import ExampleResult, StepTrace
from honed.optimizers import ReflectiveRefine, read_ledger
from honed.optimizers.attribution import attribute
from honed.testing import ScriptedLM


class Killed(BaseException):
    """Stands in for kill -9: not an Exception, so nothing on the way up catches it."""


def world(new_instruction: str = "Be careful with negative words.", good_words: tuple[str, ...] = ("careful",),
          kill_after: int | None = None, counter: list | None = None):
    """Target: says 'positive' unless its instruction has a good word. Optimizer: always proposes `new_instruction`."""
    counter = counter if counter is not None else []

    def answer(messages, schema):
        counter.append(1)
        if kill_after is not None and len(counter) > kill_after:
            raise Killed()
        if "new_instruction" in schema["properties"]:
            return {"cause": "says positive for bad films", "explains": [1, 2], "new_instruction": new_instruction,
                    "show_examples": False}
        system, last = messages[0]["content"], messages[-1]["content"]
        if any(word in system for word in good_words):
            return {"sentiment": "negative" if "bad" in last else "positive"}
        return {"sentiment": "positive"}

    return answer, counter


def compile_(lm, cache_dir, run_dir, budget=300, **options):
    honed.configure(model=lm, cache_dir=cache_dir, num_threads=1)
    optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=budget, minibatch=8, max_rounds=3, seed=0,
                                 progress=False, **options)
    compiled = optimizer.compile(program(), trainset=data(16), valset=data(8, offset=100), run_dir=run_dir)
    return optimizer, compiled


def test_a_claim_that_fixes_its_examples_is_admitted_and_wins(cache_dir, tmp_path):
    answer, _ = world()
    optimizer, compiled = compile_(ScriptedLM(answer), cache_dir, tmp_path / "run")
    assert compiled.predict.signature.instructions == "Be careful with negative words."
    assert optimizer.result.val_score == 1.0 and optimizer.result.baseline_val_score == 0.5
    assert optimizer.result.verification_rate == 1.0
    verify = [r for r in read_ledger(tmp_path / "run" / "ledger.jsonl") if r["kind"] == "verify"]
    assert verify and verify[0]["held"] is True and verify[0]["fixed"] == verify[0]["claimed"]


def test_a_claim_whose_edit_does_not_fix_its_examples_is_rejected(cache_dir, tmp_path):
    answer, _ = world(new_instruction="Think about the film.")  # no good word: fixes nothing
    optimizer, compiled = compile_(ScriptedLM(answer), cache_dir, tmp_path / "run")
    records = read_ledger(tmp_path / "run" / "ledger.jsonl")
    verdicts = [r for r in records if r["kind"] == "verify"]
    assert verdicts and all(not r["held"] and r["fixed"] == 0 for r in verdicts)
    assert not any(r["step"].startswith("r1/val") for r in records)  # never ranked
    assert optimizer.result.details.claims_held == 0 and optimizer.result.verification_rate == 0.0
    assert compiled.predict.signature.instructions == "Classify."


@pytest.mark.parametrize("budget", [8, 20, 33, 60])
def test_the_budget_is_never_exceeded(cache_dir, tmp_path, budget):
    answer, counter = world()
    optimizer, _ = compile_(ScriptedLM(answer), cache_dir, tmp_path / "run", budget=budget)
    assert optimizer.result.budget_used <= budget
    assert len(counter) <= budget  # provider calls actually made
    if budget < 60:
        assert optimizer.result.stop_reason == "budget"


def test_too_small_a_budget_says_so(cache_dir, tmp_path):
    answer, _ = world()
    with pytest.raises(honed.ConfigError, match="budget 5 cannot pay for one validation pass"):
        compile_(ScriptedLM(answer), cache_dir, tmp_path / "run", budget=5)


def test_a_killed_run_resumes_without_repeating_paid_calls(tmp_path):
    # Uninterrupted reference run, with its own cache.
    answer, full_calls = world()
    _, reference = compile_(ScriptedLM(answer), tmp_path / "cache-a", tmp_path / "run-a")
    # Same compile killed after 20 provider calls, then resumed in the same run dir and cache.
    answer, before_kill = world(kill_after=20)
    with pytest.raises(Killed):
        compile_(ScriptedLM(answer), tmp_path / "cache-b", tmp_path / "run-b")
    partial = read_ledger(tmp_path / "run-b" / "ledger.jsonl")
    dspy.cache = HonedCache(tmp_path / "cache-b")  # a new process: only what reached the disk survives
    answer, after_resume = world()
    optimizer, resumed = compile_(ScriptedLM(answer), tmp_path / "cache-b", tmp_path / "run-b")
    assert len(before_kill) - 1 + len(after_resume) == len(full_calls)  # the killing call was never paid
    assert resumed.predict.signature.instructions == reference.predict.signature.instructions
    steps = [r["step"] for r in read_ledger(tmp_path / "run-b" / "ledger.jsonl")]
    assert len(steps) == len(set(steps)) and steps[: len(partial)] == [r["step"] for r in partial]
    # And a second identical run is free and identical.
    answer, third = world()
    again, same = compile_(ScriptedLM(answer), tmp_path / "cache-b", tmp_path / "run-b")
    assert third == [] and again.result.lm_calls == 0
    assert same.predict.signature.instructions == resumed.predict.signature.instructions


def test_never_worse_on_validation_than_the_seed(cache_dir, tmp_path):
    # The proposed instruction fixes the minibatch's 'bad film' failures but breaks 'good' films of
    # the validation set (numbers >= 100 are misread), so it must lose to the seed on validation.
    def answer(messages, schema):
        if "new_instruction" in schema["properties"]:
            return {"cause": "c", "explains": [1], "new_instruction": "Be careful now.", "show_examples": False}
        system, last = messages[0]["content"], messages[-1]["content"]
        if "careful" in system:
            return {"sentiment": "negative" if ("bad" in last or "number 1" in last) else "positive"}
        return {"sentiment": "positive"}

    optimizer, compiled = compile_(ScriptedLM(answer), cache_dir, tmp_path / "run")
    assert optimizer.result.val_score >= optimizer.result.baseline_val_score
    assert compiled.predict.signature.instructions == "Classify."


def chance_gain_world():
    """The edit fixes every training failure, but on validation wins 3 and loses 2 against the seed."""
    def answer(messages, schema):
        if "new_instruction" in schema["properties"]:
            return {"cause": "c", "explains": [1], "new_instruction": "Be careful now.", "show_examples": False}
        system, last = messages[0]["content"], messages[-1]["content"]
        number = int(last.split()[-1])
        if "careful" not in system:
            return {"sentiment": "positive"}
        if number < 100:
            return {"sentiment": "negative" if "bad" in last else "positive"}
        return {"sentiment": "negative" if number in (100, 101, 102, 103, 105) else "positive"}

    return ScriptedLM(answer)


def test_a_validation_gain_that_may_be_chance_keeps_the_seed(cache_dir, tmp_path):
    optimizer, compiled = compile_(chance_gain_world(), cache_dir, tmp_path / "run")
    assert compiled.predict.signature.instructions == "Classify."
    assert optimizer.result.val_score == optimizer.result.baseline_val_score == 0.5
    gain = optimizer.result.gain_over_seed
    assert (gain.val_score, gain.wins, gain.losses, gain.holds) == (0.625, 3, 2, False)
    assert gain.p_value == 0.5  # at least 3 heads in 5 fair tosses
    final = [r for r in read_ledger(tmp_path / "run" / "ledger.jsonl") if r["kind"] == "final"][0]
    assert final["gain_over_seed"] == gain.model_dump()


def test_significance_one_returns_any_higher_validation_score(cache_dir, tmp_path):
    optimizer, compiled = compile_(chance_gain_world(), cache_dir, tmp_path / "run", significance=1.0)
    assert compiled.predict.signature.instructions == "Be careful now."
    assert optimizer.result.val_score == 0.625 and optimizer.result.gain_over_seed.holds is True


class TwoStage(dspy.Module):
    """keyword extraction, then classification from the keyword."""

    def __init__(self):
        super().__init__()
        self.extract = dspy.Predict(dspy.Signature("sentence -> keyword", "Find the opinion word."))
        self.classify = dspy.Predict(dspy.Signature("keyword -> sentiment", "Classify the keyword."))

    def forward(self, sentence):
        return self.classify(keyword=self.extract(sentence=sentence).keyword)


def _result(example, steps, prediction=True) -> ExampleResult:
    return ExampleResult(example, dspy.Prediction() if prediction else None, 0.0,
                         trace=[StepTrace(n, {}, o) for n, o in steps])


def test_attribution_blames_the_first_diverging_predictor():
    example = dspy.Example(sentence="a dull film", keyword="dull", sentiment="negative").with_inputs("sentence")
    order = ["extract", "classify"]
    wrong_first = _result(example, [("extract", {"keyword": "film"}), ("classify", {"sentiment": "positive"})])
    wrong_second = _result(example, [("extract", {"keyword": "Dull"}), ("classify", {"sentiment": "positive"})])
    broke_in_second = _result(example, [("extract", {"keyword": "dull"})], prediction=False)
    assert attribute(wrong_first, order) == "extract"
    assert attribute(wrong_second, order) == "classify"
    assert attribute(broke_in_second, order) == "classify"


def test_multi_predictor_compile_reflects_on_the_blamed_predictor(cache_dir, tmp_path):
    def answer(messages, schema):
        props = schema["properties"]
        if "new_instruction" in props:
            return {"cause": "c", "explains": [1], "new_instruction": "Pick the adjective.", "show_examples": False}
        system, last = messages[0]["content"], messages[-1]["content"]
        if "keyword" in props:
            return {"keyword": last.split()[0] if "adjective" in system else "film"}
        return {"sentiment": "negative" if last.strip() == "bad" else "positive"}

    honed.configure(model=ScriptedLM(answer), cache_dir=cache_dir, num_threads=1)
    examples = [dspy.Example(id=f"k{i}", sentence=f"{w} film", keyword=w, sentiment="negative" if w == "bad" else
                             "positive").with_inputs("sentence") for i, w in enumerate(["bad", "good"] * 10)]
    optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=300, minibatch=6, max_rounds=2,
                                 progress=False)
    compiled = optimizer.compile(TwoStage(), trainset=examples[:8], valset=examples[8:], run_dir=tmp_path / "run")
    claims = [r for r in read_ledger(tmp_path / "run" / "ledger.jsonl") if r["kind"] == "claim"]
    assert claims and all(c["predictor"] == "extract" for c in claims)
    assert compiled.extract.signature.instructions == "Pick the adjective."
    assert compiled.classify.signature.instructions == "Classify the keyword."


def test_a_request_for_n_completions_costs_n():
    from honed.optimizers.budget import BudgetExhausted, CallBudget

    budget = CallBudget(5)
    budget.observe("a", hit=False, cost=3)
    budget.observe("a", hit=True, cost=3)  # a repeat the cache answers is free
    with pytest.raises(BudgetExhausted):
        budget.observe("b", hit=True, cost=3)
    budget.observe("c", hit=True, cost=2)
    assert (budget.used, budget.paid) == (5, 3)


def test_a_repeat_that_misses_the_cache_is_charged():
    from honed.optimizers.budget import BudgetExhausted, CallBudget

    budget = CallBudget(2)
    budget.observe("a", hit=False)
    budget.observe("a", hit=False)  # still in flight elsewhere: this one reaches the provider too
    assert (budget.used, budget.paid) == (2, 2)
    with pytest.raises(BudgetExhausted):
        budget.observe("a", hit=False)
