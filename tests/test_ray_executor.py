"""`executor="ray"`: generations fan out to Ray actors while the cache and the budget stay in the driver.

What must hold (issue 19): the same scores, call counts and answers as the threads run, from a cold cache and
from a warm one (where no actor is asked at all); an actor killed mid-request is replaced and its request
retried without being charged again; concurrent actors never take the budget past its limit; a compile gives
the same program and ledger as with threads, and one whose driver is killed with SIGKILL resumes to it; and a
cluster that is not there is one clear error.

On a local Ray started once for this module (2 CPUs, one llama.cpp thread per actor), with the embedded
135M model and a handful of examples: each test takes seconds (the SIGKILL one, which starts a second
process with its own Ray, up to a minute on a loaded 2-core machine). Skipped where Ray is not installed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray")

import dspy  # noqa: E402
from films import data, program  # noqa: E402

import honed  # noqa: E402
from honed.artifact import program_hash, save  # noqa: E402
from honed.cli import main  # noqa: E402
from honed.errors import BudgetExhausted, ConfigError, ContextLengthExceeded, find_cause  # noqa: E402
from honed.models.ray_cluster import connect  # noqa: E402
from honed.models.ray_provider import active_ray_provider, use_threads  # noqa: E402
from honed.optimizers.budget import CallBudget  # noqa: E402
from honed.testing import block_model_requests  # noqa: E402

pytestmark = pytest.mark.model
TASK, LIMIT, WORKERS = "first_word_letter", 6, 2
TIMING = ("elapsed_s", "wall_s")  # ledger fields that differ between any two runs


@pytest.fixture(scope="module", autouse=True)
def local_ray(restore_dspy_settings: None) -> Iterator[None]:
    """One local Ray for the module (as `.ci/run` and a user's machine get it: started by honed), one llama.cpp
    thread per actor; the in-process provider again afterwards."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HONED_GGUF_THREADS", "1")
        connect(None, WORKERS, 1)
        yield
        use_threads()
        ray.shutdown()


def _eval_cli(capsys: pytest.CaptureFixture, cache_dir: Path, *extra: str) -> dict[str, Any]:
    code = main(["eval", TASK, "--limit", str(LIMIT), "--json", "--cache-dir", str(cache_dir), *extra])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def _task_examples() -> tuple[Any, list]:
    task = honed.load_task(TASK)
    return task, task.test[:LIMIT]


def _answers_in(cache_dir: Path) -> list[str | None]:
    """The answers `cache_dir` holds for the evaluation, read back with every model request refused."""
    honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir)
    task, examples = _task_examples()
    with block_model_requests():
        report = honed.evaluate(task.program(), examples, task.metric, progress=False)
    assert report.lm_calls == 0 and report.cache_hits == LIMIT
    return [getattr(r.prediction, task.output_field, None) for r in report.results]


def _pool() -> Any:
    provider = active_ray_provider()
    assert provider is not None, "executor='ray' did not install the Ray provider"
    return provider.pool


def test_eval_on_ray_matches_threads_from_a_cold_and_a_warm_cache(capsys, tmp_path):
    threads = _eval_cli(capsys, tmp_path / "threads")
    cold = _eval_cli(capsys, tmp_path / "ray", "--executor", "ray", "--workers", str(WORKERS))
    pool = _pool()
    asked = pool.stats.dispatched
    warm = _eval_cli(capsys, tmp_path / "ray", "--executor", "ray", "--workers", str(WORKERS))

    same = ("score", "n", "parse_failures", "errors", "lm_calls", "prompt_tokens", "completion_tokens")
    assert {k: cold[k] for k in same} == {k: threads[k] for k in same}
    assert cold["lm_calls"] == LIMIT and asked >= LIMIT  # every miss was generated on an actor
    assert warm["lm_calls"] == 0 and warm["cache_hits"] == LIMIT and warm["score"] == cold["score"]
    assert pool.stats.dispatched == asked  # the driver answered the warm run: no actor was asked
    # A fresh pool (another number of workers) on the warm cache does not even start an actor.
    again = _eval_cli(capsys, tmp_path / "ray", "--executor", "ray", "--workers", "1")
    assert again["lm_calls"] == 0 and _pool() is not pool and _pool().stats.started == 0
    assert _answers_in(tmp_path / "ray") == _answers_in(tmp_path / "threads")


def test_a_killed_actor_is_replaced_and_its_request_is_charged_once(tmp_path):
    expected = _answers_threads(tmp_path / "threads")
    honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "ray", executor="ray", workers=WORKERS)
    pool = _pool()
    before = pool.stats.as_dict()
    killed: list[Any] = []

    def kill_a_busy_actor() -> None:
        deadline = time.monotonic() + 60
        while not killed and time.monotonic() < deadline:
            busy = pool.busy()
            if busy:
                ray.kill(busy[0])
                killed.append(busy[0])
            time.sleep(0.002)

    killer = threading.Thread(target=kill_a_busy_actor, daemon=True)
    killer.start()
    task, examples = _task_examples()
    budget = CallBudget(100)
    with budget.scope():
        report = honed.evaluate(task.program(), examples, task.metric, progress=False)
    killer.join()
    after = pool.stats.as_dict()

    assert killed and after["replaced"] > before["replaced"] and after["retried"] > before["retried"]
    assert all(actor not in killed for actor in pool.actors())
    assert report.errors == 0 and report.lm_calls == LIMIT
    assert (budget.used, budget.paid) == (LIMIT, LIMIT)  # the retried request was charged once, in the driver
    assert after["completed"] - before["completed"] == LIMIT
    assert [getattr(r.prediction, task.output_field) for r in report.results] == expected


def _answers_threads(cache_dir: Path) -> list[str]:
    honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir)
    task, examples = _task_examples()
    report = honed.evaluate(task.program(), examples, task.metric, progress=False)
    return [getattr(r.prediction, task.output_field) for r in report.results]


def test_concurrent_actors_never_take_the_budget_past_its_limit(tmp_path):
    honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "ray", executor="ray", workers=WORKERS)
    pool = _pool()
    before = pool.stats.completed
    task, examples = _task_examples()
    budget = CallBudget(LIMIT - 2)
    with budget.scope(), pytest.raises(Exception) as raised:
        honed.evaluate(task.program(), examples, task.metric, progress=False, num_threads=4)
    assert find_cause(raised.value, BudgetExhausted) is not None
    generated = pool.stats.completed - before
    assert generated == budget.used == budget.paid == LIMIT - 2  # refused requests never reached an actor


def _compile(cache_dir: Path, run_dir: Path, **executor: Any) -> tuple[str, list[dict], Any]:
    honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir, max_tokens=64, **executor)
    optimizer = honed.ReflectiveRefine(honed.ExactMatch("sentiment"), budget=10, minibatch=4, claims_per_round=1,
                                       max_rounds=2, progress=False)
    compiled = optimizer.compile(program(), trainset=data(6), valset=data(4, offset=100), run_dir=run_dir)
    written = save(compiled, run_dir / "program.json")
    lines = (run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    return program_hash(written), [_untimed(json.loads(line)) for line in lines if line.strip()], optimizer.result


def _untimed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_a_compile_on_ray_gives_the_threads_program_and_ledger(tmp_path):
    threads_hash, threads_ledger, threads_result = _compile(tmp_path / "c1", tmp_path / "run1")
    honed.configure(executor="ray", workers=WORKERS)
    before = _pool().stats.completed
    ray_hash, ray_ledger, ray_result = _compile(tmp_path / "c2", tmp_path / "run2", executor="ray", workers=WORKERS)
    assert ray_hash == threads_hash
    assert len(ray_ledger) >= 3 and ray_ledger == threads_ledger
    assert ray_result.budget_used == threads_result.budget_used <= 10
    assert ray_result.lm_calls == threads_result.lm_calls == _pool().stats.completed - before > 0


COMPILE = ["compile", "sentiment", "--optimizer", "reflective", "--budget", "10", "--train-size", "6",
           "--val-size", "4", "--max-tokens", "64", "--json"]


def _cli_compile(work: Path, *extra: str) -> list[str]:
    return [*COMPILE, "--cache-dir", str(work / "cache"), "--run-dir", str(work / "run"), "--out",
            str(work / "program.json"), *extra]


def _ledger_steps(run_dir: Path) -> list[str]:
    lines = (run_dir / "ledger.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["step"] for line in lines if line.strip()]


def test_a_ray_compile_killed_with_sigkill_resumes_to_the_threads_program(capsys, tmp_path):
    assert main(_cli_compile(tmp_path / "threads")) == 0
    reference = json.loads(capsys.readouterr().out)

    work = tmp_path / "ray"
    command = [sys.executable, "-m", "honed.cli", *_cli_compile(work, "--executor", "ray", "--workers", str(WORKERS))]
    log = tmp_path / "killed.stderr"
    with log.open("w") as stderr:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
    ledger, deadline = work / "run" / "ledger.jsonl", time.monotonic() + 240
    while child.poll() is None and not (ledger.is_file() and ledger.read_text().count("\n") >= 1):
        assert time.monotonic() < deadline, "the Ray compile never wrote its first record"
        time.sleep(0.05)
    child.kill()  # SIGKILL: the driver dies at once, with its local Ray
    child.wait(timeout=60)
    assert child.returncode == -9, log.read_text()[-3000:]

    # The same command again (in this process, on the module's Ray: a new driver either way).
    assert main(_cli_compile(work, "--executor", "ray", "--workers", str(WORKERS))) == 0
    resumed = json.loads(capsys.readouterr().out)
    assert resumed["program_hash"] == reference["program_hash"]
    assert _ledger_steps(work / "run") == _ledger_steps(tmp_path / "threads" / "run")
    assert resumed["lm_calls"] < reference["lm_calls"]  # what the killed driver had cached was not paid again


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _compare_rows(tmp_path: Path, name: str, *extra: str) -> dict[str, dict[str, Any]]:
    """benchmarks/compare.py in this process (as `python benchmarks/compare.py ...` runs it), its rows by name."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import compare
    finally:
        sys.path.remove(str(BENCHMARKS))
    out = tmp_path / name
    argv = ["--tasks", TASK, "--optimizers", "none,labeled", "--budget", "12", "--limit", "4", "--train-size",
            "8", "--val-size", "4", "--default-adapter-limit", "0", "--cache-dir", str(tmp_path / f"{name}-cache"),
            "--out", str(out), *extra]
    assert compare.main(argv) == 0
    result = json.loads((out / "compare.json").read_text())
    assert result["config"]["executor"] == ("ray" if "ray" in extra else "threads")
    return {row["optimizer"]: row for row in result["rows"]}


def test_the_compare_benchmark_on_ray_gives_the_threads_rows(tmp_path):
    honed.configure(executor="ray", workers=WORKERS)  # the actors compare.py's configure keeps
    before = _pool().stats.completed
    on_ray = _compare_rows(tmp_path, "ray", "--executor", "ray", "--workers", str(WORKERS))
    assert _pool().stats.completed - before > 0  # the generations did run on the actors
    on_threads = _compare_rows(tmp_path, "threads")
    assert active_ray_provider() is None
    for name in ("none", "labeled"):
        for field in ("test_score", "val_score", "calls", "paid_calls", "test_scores", "stop_reason"):
            assert on_ray[name][field] == on_threads[name][field], (name, field)
    assert on_ray["labeled"]["calls"] == 8 and on_ray["labeled"]["error"] is None


def test_a_provider_error_on_an_actor_reaches_the_driver_as_the_provider_raised_it(tmp_path):
    honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "ray", executor="ray", workers=WORKERS)
    lm = dspy.LM("gguf/smollm2-135m", cache=False, max_tokens=64, num_retries=0)
    before = _pool().stats.as_dict()
    with pytest.raises(Exception) as raised:
        lm("word " * 5000)
    error = find_cause(raised.value, ContextLengthExceeded)
    assert error is not None and error.context == 4096 and error.prompt_tokens > 4096
    after = _pool().stats.as_dict()
    assert after["dispatched"] == before["dispatched"] + 1 and after["replaced"] == before["replaced"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_cluster_is_one_clear_error(capsys, tmp_path):
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with pytest.raises(ConfigError, match=f"no Ray cluster at {address}.*ray start --head"):
        honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path, executor="ray", ray_address=address)
    code = main(["eval", TASK, "--limit", "1", "--cache-dir", str(tmp_path), "--executor", "ray",
                 "--ray-address", address])
    err = capsys.readouterr().err
    assert code == 1 and len(err.strip().splitlines()) == 1 and f"no Ray cluster at {address}" in err
    assert time.monotonic() - started < 30  # refused at once, not after Ray's minutes of reconnecting
    assert ray.is_initialized()  # the cluster this process already had is left alone


def test_importing_honed_does_not_import_ray():
    code = "import sys, honed, honed.cli; assert 'ray' not in sys.modules, 'ray imported'"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert done.returncode == 0, done.stderr
