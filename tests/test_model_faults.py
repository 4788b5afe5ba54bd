"""Remote model faults, proved offline against the fault-injecting OpenAI-compatible server on 127.0.0.1.

What a fault does to honed:
- a 429 or a 5xx is retried by DSPy (`num_retries`: DSPy owns retries and calls litellm with
  `num_retries=0`); it waits `Retry-After` when the server sends one, else 1 s, 2 s, 4 s, ...;
- an answer that keeps failing, arrives too late, or does not parse is one failed example (scored 0,
  its error recorded), and the evaluation or compile goes on;
- a provider that refuses connections stops a compile with `ProviderUnavailable`; rerunning the same
  compile once the provider is back resumes it without paying for any answer twice.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dspy
import pytest
from fault_server import FaultServer, Recorded
from films import data, program

import honed
from honed.cache import HonedCache
from honed.errors import ProviderUnavailable
from honed.optimizers import ReflectiveRefine, read_ledger
from honed.optimizers.ledger import SETTINGS_FILE

API_KEY = "sk-fault-tests"
CLAIM = {"cause": "says positive for bad films", "explains": [1, 2],
         "new_instruction": "Be careful with negative words.", "show_examples": False}


pytestmark = pytest.mark.usefixtures("loopback_servers", "restore_dspy_settings")


def text_of(body: dict[str, Any], role: str) -> str:
    """The content of the last `role` message of a chat request (string or content parts)."""
    content = next(m for m in reversed(body["messages"]) if m["role"] == role)["content"]
    return content if isinstance(content, str) else "".join(part.get("text", "") for part in content)


def films_answer(body: dict[str, Any], schema: dict[str, Any] | None) -> dict[str, Any]:
    """Target: 'positive' unless told to be careful. Optimizer model: always proposes being careful."""
    assert schema is not None
    if "new_instruction" in schema["properties"]:
        return CLAIM
    careful = "careful" in text_of(body, "system")
    return {"sentiment": "negative" if careful and "bad" in text_of(body, "user") else "positive"}


def about(record: Recorded, words: str) -> bool:
    """Whether the request's input (last user message) mentions `words`."""
    return words in text_of(record.json, "user")


def configure(server: FaultServer, cache_dir: Path, **lm_options: Any) -> None:
    honed.configure(model="openai/fake", api_base=server.api_base, api_key=API_KEY, cache_dir=cache_dir,
                    typed_outputs="json_schema", num_threads=1, **lm_options)


def evaluate(n: int = 4, offset: int = 0) -> honed.EvalReport:
    return honed.evaluate(program(), data(n, offset), honed.ExactMatch("sentiment"), progress=False)


# -- retries -----------------------------------------------------------------------------------------------
def test_a_429_is_retried_and_then_succeeds(cache_dir: Path) -> None:
    """Retried after a pause. (DSPy waits its own 1 s here: on its litellm path the server's `Retry-After: 0`
    does not reach it, since litellm keeps the headers in `litellm_response_headers`, which DSPy does not read.)"""
    with FaultServer(["429", "ok"], answer=films_answer) as server:
        configure(server, cache_dir, num_retries=1)
        report = evaluate(1)
    requests = server.chat_requests()
    assert [r.action for r in requests] == ["429", "ok"]
    assert requests[0].key == requests[1].key  # the same request, sent again
    assert (report.score, report.errors, report.lm_calls) == (1.0, 0, 1)


def test_a_5xx_is_retried_with_exponential_backoff_and_then_succeeds(cache_dir: Path) -> None:
    with FaultServer(["500", "503", "ok"], answer=films_answer) as server:
        configure(server, cache_dir, num_retries=2)
        report = evaluate(1)
    requests = server.chat_requests()
    assert [r.action for r in requests] == ["500", "503", "ok"]
    assert (report.score, report.errors) == (1.0, 0)
    waits = [later.at - earlier.at for earlier, later in zip(requests, requests[1:], strict=False)]
    # No Retry-After: DSPy waits 1 s, then 2 s (plus whatever a loaded machine adds to both).
    assert waits[0] >= 0.95 and waits[1] >= 1.95 and waits[1] - waits[0] >= 0.5, waits


@pytest.mark.parametrize("fault", ["500", "garbage"])
def test_an_answer_that_keeps_failing_is_one_failed_example(cache_dir: Path, fault: str) -> None:
    """Retried `num_retries` times, then scored 0 with its error; the other examples are unaffected.

    Garbage (a 200 whose body is not JSON) is a server error to litellm, so it is retried like a 500."""
    with FaultServer(lambda r: fault if about(r, "number 1") else "ok", answer=films_answer) as server:
        configure(server, cache_dir, num_retries=1)
        report = evaluate(4)
    failing = [r for r in server.chat_requests() if about(r, "number 1")]
    assert [r.action for r in failing] == [fault, fault]  # the first try and one retry
    assert (report.n, report.errors, report.parse_failures) == (4, 1, 0)
    failed = report.results[1]
    assert failed.score == 0.0 and failed.prediction is None
    assert failed.error and "LMServerError" in failed.error
    assert [r.error for i, r in enumerate(report.results) if i != 1] == [None, None, None]
    assert report.score == 0.5  # 'good' x2 right, 'bad film number 3' wrong (the seed says positive), 1 failed


def test_malformed_json_from_the_model_is_a_parse_failure(cache_dir: Path) -> None:
    with FaultServer(lambda r: "malformed" if about(r, "number 2") else "ok", answer=films_answer) as server:
        configure(server, cache_dir, num_retries=2)
        report = evaluate(4)
    assert (report.parse_failures, report.errors) == (1, 0)
    failed = report.results[2]
    assert failed.parse_failure and failed.score == 0.0 and failed.error.startswith("parse failure")
    assert [r.action for r in server.chat_requests() if about(r, "number 2")] == ["malformed"]  # not retried
    assert all(r.prediction is not None for i, r in enumerate(report.results) if i != 2)


def test_an_answer_slower_than_the_timeout_is_a_failed_example(cache_dir: Path) -> None:
    with FaultServer(lambda r: "slow" if about(r, "number 0") else "ok", answer=films_answer,
                     slow_s=8.0) as server:
        configure(server, cache_dir, num_retries=0, timeout=2.0)  # generous: this machine may be loaded
        started = time.perf_counter()
        report = evaluate(3)
        elapsed = time.perf_counter() - started
    assert (report.n, report.errors) == (3, 1)
    assert "Timeout" in report.results[0].error and report.results[0].score == 0.0
    assert report.results[1].prediction is not None and report.results[2].prediction is not None
    assert elapsed < 7.0, elapsed  # gave up at the timeout, did not wait for the answer


# -- a compile goes on through failed answers ---------------------------------------------------------------
def _compile(run_dir: Path, size: int = 8) -> tuple[ReflectiveRefine, dspy.Module]:
    """ReflectiveRefine on `2 * size` training and `size` validation films, under the configured model.

    `significance=1.0`: with as few as 4 validation films no gain could pass the sign test, and these
    tests are about faults, not about how the result is chosen."""
    optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=80, minibatch=size, max_rounds=2, seed=0,
                                 significance=1.0, progress=False)
    compiled = optimizer.compile(program(), trainset=data(2 * size), valset=data(size, offset=100), run_dir=run_dir)
    return optimizer, compiled


def test_a_compile_goes_on_when_answers_fail(cache_dir: Path, tmp_path: Path) -> None:
    """'good film number 100' (validation) always gets a 500: it scores 0 everywhere; the compile still improves."""
    with FaultServer(lambda r: "500" if about(r, "number 100") else "ok", answer=films_answer) as server:
        configure(server, cache_dir, num_retries=0)
        optimizer, compiled = _compile(tmp_path / "run")
    summary = optimizer.result.summary()
    assert summary["baseline_val_score"] == 3 / 8  # 4 'good' minus the failing one; the seed says positive
    assert summary["val_score"] == 7 / 8  # every example right but the failing one
    assert compiled.predict.signature.instructions == CLAIM["new_instruction"]
    assert summary["stop_reason"] in ("max_rounds", "budget")
    assert server.chat_requests("500")  # the fault really was served
    validations = [r for r in read_ledger(tmp_path / "run" / "ledger.jsonl") if r.get("kind") == "validate"]
    assert validations and all(r["n"] in (2, 8) for r in validations)  # failed examples are counted, not dropped


# -- the provider goes away ---------------------------------------------------------------------------------
def test_an_unreachable_provider_stops_an_evaluation_at_once(cache_dir: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    module = sys.modules["honed.evaluate"]  # `honed.evaluate` is also the function's name
    tried: list[str] = []

    def counting_run_example(program: Any, metric: Any, example: dspy.Example, *args: Any) -> Any:
        tried.append(example.sentence)
        return run_example(program, metric, example, *args)

    run_example = module.run_example
    monkeypatch.setattr(module, "run_example", counting_run_example)
    server = FaultServer(answer=films_answer).start()
    configure(server, cache_dir, num_retries=1)
    server.stop()
    with pytest.raises(ProviderUnavailable) as info:
        evaluate(4)
    message = str(info.value)
    assert "openai/fake" in message and "connection refused" in message and server.api_base in message
    assert "2 attempts" in message and "rerun the same command" in message
    assert API_KEY not in message
    assert tried == ["good film number 0"]  # the other three examples were never tried


def _hang_up_at(where: str) -> Any:
    """A schedule: the server dies on the 11th request (verifying a claim) or on the first reflection."""
    def schedule(record: Recorded) -> str:
        reflection = "new_instruction" in json.dumps(record.json.get("response_format"))
        return "hangup" if (record.index == 10 if where == "evaluation" else reflection) else "ok"

    return schedule


@pytest.mark.parametrize("where", ["evaluation", "reflection"])
def test_a_provider_gone_mid_compile_stops_it_and_a_rerun_resumes_without_repeating_a_paid_call(
        cache_dir: Path, tmp_path: Path, where: str) -> None:
    run_dir = tmp_path / "run"
    first = FaultServer(_hang_up_at(where), answer=films_answer).start()
    try:
        configure(first, cache_dir, num_retries=1)
        with pytest.raises(ProviderUnavailable) as info:
            _compile(run_dir, size=4)
    finally:
        first.stop()
    assert "openai/fake" in str(info.value) and "connection refused" in str(info.value)
    assert first.chat_requests()[-1].action == "hangup"
    answered_first = Counter(r.key for r in first.chat_requests("ok"))
    assert answered_first and max(answered_first.values()) == 1

    # The run directory and the cache are intact: a readable ledger and every answer on disk.
    records = read_ledger(run_dir / "ledger.jsonl")
    assert (run_dir / SETTINGS_FILE).exists() and records and records[0]["step"] == "seed/val"
    assert not any(r["kind"] == "final" for r in records)
    assert not [r for r in records if r.get("error")]  # the refused call was not logged as a failed step
    dspy.cache = HonedCache(cache_dir)  # a fresh process's cache: nothing in memory, all from disk

    # The provider is back on the same endpoint: the same compile resumes and completes.
    with FaultServer(answer=films_answer, port=first.port) as second:
        configure(second, cache_dir, num_retries=1)
        optimizer, compiled = _compile(run_dir, size=4)
    assert optimizer.result.val_score == 1.0
    assert compiled.predict.signature.instructions == CLAIM["new_instruction"]
    again = [r.key for r in second.chat_requests()]
    assert not set(again) & set(answered_first)  # no answered request was sent again
    assert max(Counter(again).values()) == 1
    assert optimizer.result.lm_calls == len(again)
    assert optimizer.result.cache_hits >= len(answered_first)
    steps = [r["step"] for r in read_ledger(run_dir / "ledger.jsonl")]
    assert len(steps) == len(set(steps)) and steps[: len(records)] == [r["step"] for r in records]
    assert steps[-1] == "final"


def test_a_provider_gone_stops_a_compile_with_a_dspy_optimizer_too(cache_dir: Path, tmp_path: Path) -> None:
    """DSPy's LabeledFewShot under honed's machinery: the refusal comes in honed's final validation pass."""
    from honed.optimizers.registry import make_optimizer

    server = FaultServer(lambda r: "hangup" if r.index == 10 else "ok", answer=films_answer).start()
    try:
        configure(server, cache_dir, num_retries=1)
        optimizer = make_optimizer("labeled", honed.ExactMatch("sentiment"), budget=60, seed=0, progress=False)
        with pytest.raises(ProviderUnavailable):
            optimizer.compile(program(), trainset=data(16), valset=data(8, offset=100), run_dir=tmp_path / "run")
    finally:
        server.stop()
    actions = [r.action for r in server.chat_requests()]  # DSPy's optimizers evaluate on 2 threads
    assert actions[:11] == ["ok"] * 10 + ["hangup"]  # the seed's validation pass, then into the final one
    assert [r["step"] for r in read_ledger(tmp_path / "run" / "ledger.jsonl")] == ["seed/val", "seed", "optimizer"]
