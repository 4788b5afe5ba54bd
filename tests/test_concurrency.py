"""Several processes and threads on one cache, and caches that cannot be used: nothing crashes, nothing
is answered wrongly, and a cache directory that fails says so and falls back to memory."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import crash_compile
import dspy
import pytest

import honed
from honed.artifact import program_hash
from honed.cache import CacheFallbackWarning, HonedCache
from honed.testing import ScriptedLM

SCRIPT = Path(crash_compile.__file__)


# -- two processes, one cache directory ------------------------------------------------------------------


def test_two_processes_compiling_against_one_cache_at_once_match_a_single_process(tmp_path):
    reference = crash_compile.compile_and_save("reflective", tmp_path / "ref-cache", tmp_path / "ref-run",
                                               tmp_path / "ref.json", tmp_path / "ref-calls.txt", "ref")
    go = tmp_path / "go"
    procs = {}
    for name in ("A", "B"):
        args = [sys.executable, str(SCRIPT), "--cache-dir", str(tmp_path / "shared-cache"),
                "--run-dir", str(tmp_path / f"run-{name}"), "--out", str(tmp_path / f"{name}.json"),
                "--calls", str(tmp_path / "calls.txt"), "--attempt", name, "--threads", "2", "--delay", "0.01",
                "--start-after", str(go)]
        procs[name] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not all((tmp_path / f"go.{name}.ready").exists() for name in procs):  # both imported and configured
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs.values()), "a process died"
        time.sleep(0.01)
    go.touch()
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, f"process {name} failed:\n{err}"
        assert "Traceback" not in err and "locked" not in err, err

    for name in ("A", "B"):
        artifact = json.loads((tmp_path / f"{name}.json").read_text())
        assert program_hash(artifact) == program_hash(reference)
    # They really ran at the same time: their provider calls interleave in the shared calls file.
    order = [line.split()[0] for line in (tmp_path / "calls.txt").read_text().splitlines()
             if line.split()[1] == "call"]
    switches = sum(1 for a, b in zip(order, order[1:], strict=False) if a != b)
    assert switches >= 2, f"the processes did not overlap (calls by process, in order: {''.join(order)})"
    # Every request of the compile was answered and stored by one process or the other.
    ref_calls = {line.split()[2] for line in (tmp_path / "ref-calls.txt").read_text().splitlines()}
    shared = {line.split()[2] for line in (tmp_path / "calls.txt").read_text().splitlines()}
    assert shared == ref_calls


# -- many threads on the embedded model ------------------------------------------------------------------


@pytest.mark.model
def test_eight_threads_on_the_embedded_model_match_one_thread(tmp_path):
    program = honed.Classify(["positive", "negative"], input_field="sentence", output_field="sentiment",
                             instructions="Classify the sentiment of the sentence as positive or negative.")
    sentences = ["A warm, funny and moving film.", "Dull, slow and far too long.", "I would not watch it again."]
    examples = [dspy.Example(sentence=s, sentiment="positive").with_inputs("sentence") for s in sentences] * 8
    metric = honed.ExactMatch("sentiment")

    def answers(cache_dir: Path, threads: int) -> tuple[list[str], honed.EvalReport]:
        honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir, max_tokens=16)
        report = honed.evaluate(program, examples, metric, num_threads=threads, progress=False)
        return [r.prediction.sentiment if r.prediction is not None else r.error for r in report.results], report

    single, single_report = answers(tmp_path / "one", 1)
    parallel, report = answers(tmp_path / "eight", 8)
    assert report.errors == 0 and report.parse_failures == 0
    assert all(answer in ("positive", "negative") for answer in parallel)
    assert parallel == single
    assert single_report.lm_calls == 3 and report.lm_calls >= 3  # threads racing on one prompt may each miss
    # What the eight threads wrote to disk is intact: a fresh process-like cache answers everything from it.
    dspy.cache = HonedCache(tmp_path / "eight", memory=False)
    again, again_report = answers(tmp_path / "eight", 8)
    assert again == single and again_report.lm_calls == 0


# -- caches that cannot be used ------------------------------------------------------------------------


def _program() -> honed.Transform:
    return honed.Transform(input_field="word", output_field="plural", instructions="Write the plural.")


def _lm() -> dspy.LM:
    return ScriptedLM(lambda messages, schema: {"plural": messages[-1]["content"].strip() + "s"})


def _populated(directory: Path) -> Path:
    """A real diskcache directory with a few answers in it (and its handles closed)."""
    cache = HonedCache(directory)
    for i in range(5):
        cache.disk_cache.set(f"key{i}", {"answer": i})
    cache.disk_cache.close()
    return directory


def _fresh_process() -> None:
    """Forget the current cache, as a new process would, so `configure` opens the directory again."""
    dspy.cache = HonedCache(None, disk=False)


def _configure_expecting_fallback(directory: Path) -> honed.config.Settings:
    _fresh_process()
    with pytest.warns(CacheFallbackWarning) as caught:
        settings = honed.configure(model=_lm(), cache_dir=directory)
    message = str(caught[0].message)
    assert str(directory) in message and "memory only" in message and "pass another cache_dir" in message
    assert settings.cache_dir is None and not settings.cache.on_disk and settings.cache.disk_error
    return settings


def _works_from_memory(settings: honed.config.Settings) -> None:
    lm = settings.lm
    assert _program()(word="cat").plural == "cats"
    assert _program()(word="cat").plural == "cats"  # the second is a memory hit
    assert len(lm.engine.calls) == 1


def test_garbage_in_the_cache_database_falls_back_to_memory(tmp_path):
    directory = _populated(tmp_path / "cache")
    for database in directory.rglob("cache.db"):
        database.write_bytes(os.urandom(4096))  # DSPy's own cache raises here at first use (DSPy #8600)
    _works_from_memory(_configure_expecting_fallback(directory))
    with warnings.catch_warnings():  # configuring the same directory again reuses the fallback quietly
        warnings.simplefilter("error")
        assert honed.configure(model=_lm(), cache_dir=directory).cache.disk_error


def test_a_file_where_the_cache_directory_should_be_falls_back_to_memory(tmp_path):
    path = tmp_path / "cache"
    path.write_text("not a directory")
    _works_from_memory(_configure_expecting_fallback(path))
    assert path.read_text() == "not a directory"


def _can_write(directory: Path) -> bool:
    try:
        (directory / ".probe").touch()
    except OSError:
        return False
    (directory / ".probe").unlink()
    return True


def test_a_read_only_cache_directory_is_served_read_only(tmp_path, monkeypatch):
    directory = _populated(tmp_path / "cache")
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o500 if path.is_dir() else 0o400)
    try:
        if _can_write(directory):
            # Root ignores file modes, so open every database the way sqlite must open a read-only file:
            # the real "attempt to write a readonly database" then comes from sqlite itself (DSPy #8717).
            import diskcache.core

            real_connect = sqlite3.connect

            def read_only(database, *args, **kwargs):
                if kwargs.get("uri"):  # honed's read-only reader asks for mode=ro itself
                    return real_connect(database, *args, **kwargs)
                return real_connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

            monkeypatch.setattr(diskcache.core.sqlite3, "connect", read_only)
        settings = _configure_expecting_fallback(directory)
        reason = settings.cache.disk_error.lower()
        assert any(word in reason for word in ("readonly", "read-only", "permission", "unable to open")), reason
        assert settings.cache.read_only and settings.cache.disk_cache.get("key3") == {"answer": 3}
        _works_from_memory(settings)
    finally:
        for path in [directory, *directory.rglob("*")]:
            path.chmod(0o700 if path.is_dir() else 0o600)


def test_a_disk_that_fails_mid_run_warns_once_and_keeps_serving_from_memory(tmp_path, monkeypatch):
    _fresh_process()
    settings = honed.configure(model=_lm(), cache_dir=tmp_path / "cache")
    assert settings.cache.on_disk
    _program()(word="dog")  # written to disk while the disk still works
    inner = settings.cache.disk_cache.disk

    def full(*args, **kwargs):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(inner, "set", full)
    with pytest.warns(CacheFallbackWarning, match="could not be written") as caught:
        answers = [_program()(word=word).plural for word in ("cat", "cow", "cat", "dog")]
    assert answers == ["cats", "cows", "cats", "dogs"]
    assert len(caught) == 1  # once, not per call
    assert len(settings.lm.engine.calls) == 3  # dog (before), cat, cow: repeats came from memory
    assert not settings.cache.on_disk


def test_a_database_damaged_mid_run_is_read_as_a_miss_and_dropped(tmp_path, monkeypatch):
    _fresh_process()
    settings = honed.configure(model=_lm(), cache_dir=tmp_path / "cache")
    inner = settings.cache.disk_cache.disk

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(inner, "get", malformed)
    with pytest.warns(CacheFallbackWarning, match="could not be read"):
        assert _program()(word="cat").plural == "cats"
    assert _program()(word="cat").plural == "cats"
    assert len(settings.lm.engine.calls) == 1 and not settings.cache.on_disk
