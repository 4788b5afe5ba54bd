"""The call budget holds at the model-call boundary: for every LM object, cache on or off, any thread.

The budget is charged where DSPy makes a request (`honed.models.budgeted`), before the cache is asked
and before the provider is called. These tests count what actually reaches the engine (the fakes'
`engine.calls`, or the embedded provider's call count) and hold it to the budget.
"""

from __future__ import annotations

import asyncio
import threading
import time

import dspy
import pytest
from films import data, program

import honed
from honed.models import budgeted
from honed.optimizers import ReflectiveRefine
from honed.optimizers.behavior import BehaviorOptimizer
from honed.optimizers.budget import BudgetExhausted, CallBudget
from honed.optimizers.dspy_optimizers import DSPyOptimizer
from honed.testing import FunctionEngine, SchemaLM, ScriptedLM


def _plural(messages, schema):
    return {"plural": messages[-1]["content"].strip() + "s"}


def _transform() -> honed.Transform:
    return honed.Transform(input_field="word", output_field="plural", instructions="Write the plural.")


def _ask(word: str) -> str | None:
    """One request through a program and the adapter; None when the budget refused it."""
    try:
        return _transform()(word=word).plural
    except Exception as exc:
        if isinstance(exc, BudgetExhausted) or isinstance(exc.__cause__, BudgetExhausted):
            return None
        raise


def _configure(lm: dspy.BaseLM, cache_dir) -> None:
    honed.configure(model=lm, cache_dir=cache_dir, num_threads=1)


def test_with_the_cache_off_the_third_distinct_request_is_refused_and_never_sent(cache_dir):
    lm = ScriptedLM(_plural, cache=False)
    _configure(lm, cache_dir)
    budget = CallBudget(2)
    with budget.scope():
        assert [_ask("cat"), _ask("dog")] == ["cats", "dogs"]
        with pytest.raises(BudgetExhausted):
            _transform()(word="cow")
    assert len(lm.engine.calls) == 2  # "cow" never reached the engine
    assert (budget.used, budget.paid) == (2, 2)


def test_a_repeat_is_free_only_when_the_cache_answers_it(cache_dir):
    cached = ScriptedLM(_plural)
    _configure(cached, cache_dir)
    budget = CallBudget(2)
    with budget.scope():
        assert [_ask("cat"), _ask("cat"), _ask("dog")] == ["cats", "cats", "dogs"]  # the repeat is a hit: free
        assert _ask("cow") is None
    assert len(cached.engine.calls) == 2 and (budget.used, budget.paid) == (2, 2)

    uncached = ScriptedLM(_plural, cache=False)
    _configure(uncached, cache_dir)
    budget = CallBudget(2)
    with budget.scope():
        assert [_ask("cat"), _ask("cat")] == ["cats", "cats"]  # the cache is off: the repeat is sent, and paid
        assert _ask("cat") is None
    assert len(uncached.engine.calls) == 2 and (budget.used, budget.paid) == (2, 2)


def test_a_warm_cache_charges_the_same_requests_and_pays_for_none(cache_dir):
    lm = ScriptedLM(_plural)
    _configure(lm, cache_dir)
    cold, warm = CallBudget(3), CallBudget(3)
    with cold.scope():
        cold_answers = [_ask(word) for word in ("cat", "dog", "cat", "cow", "pig")]
    with warm.scope():
        warm_answers = [_ask(word) for word in ("cat", "dog", "cat", "cow", "pig")]
    assert cold_answers == warm_answers == ["cats", "dogs", "cats", "cows", None]  # refused at the same point
    assert (cold.used, cold.paid, warm.used, warm.paid) == (3, 3, 3, 0)
    assert len(lm.engine.calls) == 3


def test_the_key_of_a_request_is_the_same_with_the_cache_on_or_off():
    from dspy.clients.execution import prepare

    messages = [{"role": "user", "content": "hi"}]
    on, off = ScriptedLM(_plural), ScriptedLM(_plural, cache=False)
    key_on = budgeted.request_key(on, prepare(on, None, messages, {}))
    assert key_on == budgeted.request_key(off, prepare(off, None, messages, {}))
    assert key_on != budgeted.request_key(on, prepare(on, None, messages, {"temperature": 0.5}))


@pytest.mark.parametrize("cache", [False, True])
def test_threads_never_exceed_the_budget(cache, cache_dir):
    entered = threading.Barrier(8)

    def slow(messages, schema):
        time.sleep(0.01)  # keep requests in flight together
        return _plural(messages, schema)

    lm = ScriptedLM(slow, cache=cache)
    _configure(lm, cache_dir)
    budget = CallBudget(5)
    answers: list[str | None] = []

    def worker(index: int) -> None:
        with budget.scope():
            entered.wait()
            for word in (f"w{index}", "shared", f"v{index}"):
                answers.append(_ask(word))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 24 and budget.used == 5
    assert len(lm.engine.calls) <= 5 and budget.paid == len(lm.engine.calls)
    assert sum(a is not None for a in answers) >= 5


class _AsyncEngine:
    """The async counterpart of a `FunctionEngine` (ScriptedLM has none), for `acall`."""

    def __init__(self, engine: FunctionEngine) -> None:
        self.engine = engine

    async def complete(self, request):
        return self.engine.complete(request)


def test_async_calls_are_charged_too():
    engine = FunctionEngine(lambda messages, schema: "ok")
    lm = dspy.LM("scripted/async", engine=engine, async_engine=_AsyncEngine(engine), cache=False, num_retries=0)
    budget = CallBudget(1)

    async def two_requests() -> None:
        assert await lm.acall("first") == ["ok"]
        with pytest.raises(BudgetExhausted):
            await lm.acall("second")

    with budget.scope():
        asyncio.run(two_requests())
    assert len(engine.calls) == 1 and budget.used == 1


def test_a_legacy_lm_that_never_caches_is_charged():
    class Legacy(dspy.BaseLM):
        """The DSPy 3.3 way to plug in a model: `forward` returns an OpenAI-shaped response."""

        def __init__(self) -> None:
            super().__init__(model="legacy/fake")
            self.calls = 0

        def forward(self, prompt=None, messages=None, **kwargs):
            self.calls += 1
            return {"model": self.model, "usage": {},
                    "choices": [{"index": 0, "finish_reason": "stop", "message": {"content": "ok"}}]}

    lm = Legacy()
    budget = CallBudget(1)
    with budget.scope(), pytest.warns(DeprecationWarning):
        assert lm("same") == ["ok"]
        with pytest.raises(BudgetExhausted):
            lm("same")  # DSPy never caches a legacy LM, so the repeat would be sent again
    assert lm.calls == 1


def _reflective_world(messages, schema):
    if "new_instruction" in schema["properties"]:
        return {"cause": "says positive for bad films", "explains": [1, 2],
                "new_instruction": "Be careful with negative words.", "show_examples": False}
    system, last = messages[0]["content"], messages[-1]["content"]
    careful = "careful" in system
    return {"sentiment": "negative" if careful and "bad" in last else "positive"}


@pytest.mark.parametrize("kind", ["reflective", "behavior", "bootstrap"])
@pytest.mark.parametrize("budget", [10, 30])
def test_a_compile_with_uncached_models_in_both_roles_stays_within_its_budget(kind, budget, cache_dir, tmp_path):
    task = ScriptedLM(_reflective_world, model="scripted/task", cache=False)
    if kind == "behavior":
        task = SchemaLM(model="schema/task", cache=False)
    reflector = ScriptedLM(_reflective_world, model="scripted/optimizer", cache=False)
    if kind == "behavior":
        reflector = SchemaLM(model="schema/optimizer", cache=False)
    honed.configure(model=task, cache_dir=cache_dir, num_threads=4)  # DSPy's worker threads carry the budget
    options = {"optimizer_model": reflector, "budget": budget, "progress": False}
    if kind == "reflective":
        optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), minibatch=4, max_rounds=3, **options)
    elif kind == "behavior":
        optimizer = BehaviorOptimizer(honed.ExactMatch("sentiment"), refinement_steps=1, minibatch=4, **options)
    else:
        optimizer = DSPyOptimizer(kind, honed.ExactMatch("sentiment"), **options)
    optimizer.compile(program(), trainset=data(8), valset=data(4, offset=100), run_dir=tmp_path / "run")
    sent = len(task.engine.calls) + len(reflector.engine.calls)
    assert len(reflector.engine.calls) > 0 or kind == "bootstrap"  # the optimizer model was really used
    assert 0 < sent <= budget
    # Every request was charged where it was made: nothing reached an engine uncounted.
    assert optimizer.result.budget_used == optimizer.result.lm_calls == sent


@pytest.mark.model
def test_the_embedded_model_uncached_in_both_roles_makes_at_most_budget_provider_calls(cache_dir, tmp_path):
    from honed.models.gguf import register_gguf_provider

    provider = register_gguf_provider()
    lm = dspy.LM("gguf/smollm2-135m", cache=False, max_tokens=64)
    honed.configure(model=lm, optimizer_model=lm, cache_dir=cache_dir, num_threads=1)
    before = provider.stats.calls
    optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=10, minibatch=4, claims_per_round=1,
                                 max_rounds=2, progress=False)
    optimizer.compile(program(), trainset=data(6), valset=data(4, offset=100), run_dir=tmp_path / "run")
    calls = provider.stats.calls - before
    assert 0 < calls <= 10  # with the budget enforced in the cache instead: 14 calls, budget_used 0
    assert optimizer.result.budget_used == optimizer.result.lm_calls == calls
