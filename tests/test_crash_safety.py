"""A compile killed with SIGKILL at random moments resumes to the very program an uninterrupted run makes,
without paying twice for any answer that had reached the cache; the run ledger survives torn writes."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import crash_compile
import pytest

from honed.artifact import program_hash
from honed.optimizers.ledger import LEDGER_FILE, SETTINGS_FILE, RunDirError, RunLedger, read_ledger

SCRIPT = Path(crash_compile.__file__)
DELAY = 0.003  # seconds per scripted provider call


def run_attempt(tmp: Path, optimizer: str, attempt: str, kill_at: int | None = None, extra_delay: float = 0.0,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the compile script; with `kill_at`, SIGKILL it once the calls file holds `kill_at` calls
    (plus `extra_delay` seconds, so the kill lands anywhere: mid-call, mid-ledger-write, between steps)."""
    args = [sys.executable, str(SCRIPT), "--optimizer", optimizer, "--cache-dir", str(tmp / "cache"),
            "--run-dir", str(tmp / "run"), "--out", str(tmp / "artifact.json"), "--calls", str(tmp / "calls.txt"),
            "--attempt", attempt, "--delay", str(DELAY)]
    stderr = tmp / f"stderr-{attempt}.txt"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        if kill_at is not None:
            while proc.poll() is None and calls_made(tmp / "calls.txt") < kill_at:
                assert time.monotonic() < deadline, "the child never reached its kill point"
                time.sleep(0.001)
            time.sleep(extra_delay)
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    return subprocess.CompletedProcess(args, rc, None, stderr.read_text())


def calls_made(path: Path) -> int:
    return read_calls(path).count if path.exists() else 0


class Calls:
    """The calls file: `(attempt, event, digest)` per line, event `call` or `stored`."""

    def __init__(self, lines: list[tuple[str, str, str]]) -> None:
        self.lines = lines
        self.count = sum(event == "call" for _, event, _ in lines)

    def calls(self, attempt: str | None = None) -> list[str]:
        return [d for a, e, d in self.lines if e == "call" and (attempt is None or a == attempt)]

    def stored(self, attempt: str) -> set[str]:
        return {d for a, e, d in self.lines if e == "stored" and a == attempt}


def read_calls(path: Path) -> Calls:
    lines = []
    for raw in path.read_text().splitlines():
        parts = raw.split()
        if len(parts) == 3:
            lines.append((parts[0], parts[1], parts[2]))
    return Calls(lines)


def reference(tmp: Path, optimizer: str) -> tuple[dict, Calls, list[str]]:
    """An uninterrupted compile with the same seed, in fresh directories (run in this process)."""
    artifact = crash_compile.compile_and_save(optimizer, tmp / "cache", tmp / "run", tmp / "artifact.json",
                                              tmp / "calls.txt", "ref", delay=0.0)
    return artifact, read_calls(tmp / "calls.txt"), [r["step"] for r in read_ledger(tmp / "run" / LEDGER_FILE)]


@pytest.mark.parametrize(("optimizer", "kills", "seed"), [("reflective", 3, 11), ("behavior", 2, 23)])
def test_sigkilled_compile_resumes_to_the_same_program_without_repaying(tmp_path, optimizer, kills, seed):
    ref_artifact, ref_calls, ref_steps = reference(tmp_path / "ref", optimizer)
    total = ref_calls.count
    assert total >= 20 and len(set(ref_calls.calls())) == total  # each request once in a clean run
    rng = random.Random(seed)
    points = sorted(rng.sample(range(2, total - 2), kills))

    work = tmp_path / "killed"
    work.mkdir()
    snapshots: list[bytes] = []
    for number, point in enumerate(points, start=1):
        kill_at = max(point, calls_made(work / "calls.txt") + 1)  # a later point than any kill so far
        done = run_attempt(work, optimizer, f"k{number}", kill_at=kill_at, extra_delay=rng.uniform(0, 0.02))
        assert done.returncode == -signal.SIGKILL, f"attempt k{number} was not killed:\n{done.stderr}"
        ledger = work / "run" / LEDGER_FILE
        written = ledger.read_bytes() if ledger.exists() else b""
        snapshots.append(written[: written.rfind(b"\n") + 1])  # a kill mid-write may have torn the last line
    # The last kill also tears the ledger's last line, as a kill in the middle of a write would.
    with (work / "run" / LEDGER_FILE).open("ab") as handle:
        handle.write(b'{"step": "r9/minibatch", "kind": "mini')
    final = run_attempt(work, optimizer, "final")
    assert final.returncode == 0, final.stderr
    assert "torn last line removed" in final.stderr

    # 1. The resumed compile made exactly the program the uninterrupted one made.
    artifact = json.loads((work / "artifact.json").read_text())
    assert program_hash(artifact) == program_hash(ref_artifact)
    assert artifact["predictors"] == ref_artifact["predictors"]

    # 2. The same requests were made, and none whose answer had been stored was ever sent again. The only
    # repeats allowed are calls in flight at a kill: started (`call`) by a killed attempt that never logged
    # `stored` for them; with one thread that is at most one call per kill.
    calls = read_calls(work / "calls.txt")
    attempts = [f"k{n}" for n in range(1, kills + 1)] + ["final"]
    assert set(calls.calls()) == set(ref_calls.calls())
    stored_before: set[str] = set()
    repeats = 0
    for attempt in attempts:
        mine = calls.calls(attempt)
        assert len(mine) == len(set(mine)), f"{attempt} sent a request twice"
        assert not stored_before & set(mine), f"{attempt} re-sent requests whose answers were stored"
        in_flight = set(mine) - calls.stored(attempt)
        if attempt == "final":
            assert not in_flight  # every call of the completed run was answered and stored
        else:
            assert len(in_flight) <= 1, f"{attempt}: more than one call in flight at the kill"
        repeats += len(set(mine) & _called_before(calls, attempts, attempt))
        stored_before |= calls.stored(attempt)
    assert calls.count == total + repeats and repeats <= kills
    lines = [snapshot.count(b"\n") for snapshot in snapshots]
    print(f"{optimizer}: kills after calls {points}, {repeats} in-flight call(s) repeated, ledger lines {lines}")

    # 3. The ledger only ever grew: each killed attempt's ledger is a prefix of the final one, whose steps
    # are the uninterrupted run's, each once, in the same order; the torn line is gone.
    text = (work / "run" / LEDGER_FILE).read_bytes()
    assert all(text.startswith(snapshot) for snapshot in snapshots)
    assert [json.loads(line)["step"] for line in text.decode().splitlines()] == ref_steps


def _called_before(calls: Calls, attempts: list[str], attempt: str) -> set[str]:
    earlier = attempts[: attempts.index(attempt)]
    return {d for a in earlier for d in calls.calls(a)}


# -- the ledger on its own -----------------------------------------------------------------------------

SETTINGS = {"optimizer": "reflective", "seed": 0}


def test_every_record_is_fsynced_and_appends_never_rewrite_earlier_bytes(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd))[1])
    ledger = RunLedger(tmp_path / "run", SETTINGS)
    before = b""
    for number in range(3):
        synced.clear()
        assert ledger.append({"step": f"s{number}", "kind": "x", "score": number / 3})
        assert synced, "append returned before the record was fsync'd"
        now = ledger.path.read_bytes()
        assert now.startswith(before) and now.count(b"\n") == number + 1
        before = now
    assert ledger.append({"step": "s1", "kind": "changed"}) is False  # a step is written once, never replaced
    assert ledger.path.read_bytes() == before
    assert [r["step"] for r in RunLedger(tmp_path / "run", SETTINGS).records] == ["s0", "s1", "s2"]


def test_a_torn_last_line_is_skipped_then_cut_before_the_next_append(tmp_path, caplog):
    ledger = RunLedger(tmp_path / "run", SETTINGS)
    ledger.append({"step": "a", "kind": "x"})
    ledger.append({"step": "b", "kind": "x"})
    intact = ledger.path.read_bytes()
    with ledger.path.open("ab") as handle:
        handle.write('{"step": "c", "kind": "caf\u00e9'.encode()[:-1])  # cut inside a multi-byte character
    with caplog.at_level(logging.WARNING):
        assert [r["step"] for r in read_ledger(ledger.path)] == ["a", "b"]
    assert "torn last line skipped" in caplog.text
    resumed = RunLedger(tmp_path / "run", SETTINGS)
    assert ledger.path.read_bytes() == intact and [r["step"] for r in resumed.records] == ["a", "b"]
    resumed.append({"step": "c", "kind": "x"})
    assert [r["step"] for r in read_ledger(ledger.path)] == ["a", "b", "c"]


def test_a_damaged_line_before_the_end_refuses_to_resume(tmp_path):
    ledger = RunLedger(tmp_path / "run", SETTINGS)
    ledger.append({"step": "a", "kind": "x"})
    ledger.path.write_bytes(b'{"step": "a", "ki\n' + ledger.path.read_bytes())
    with pytest.raises(RunDirError, match=r"ledger.jsonl:1: ledger line is not valid JSON"):
        RunLedger(tmp_path / "run", SETTINGS)


def test_settings_are_written_atomically_and_a_torn_start_is_recovered(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    (run / SETTINGS_FILE).write_text('{"optimizer": "refl')  # a start killed mid-write, by an older honed
    ledger = RunLedger(run, SETTINGS)  # nothing was logged yet, so the settings are simply written again
    assert json.loads((run / SETTINGS_FILE).read_text()) == SETTINGS
    assert not list(run.glob(".*.tmp"))
    ledger.append({"step": "a", "kind": "x"})
    (run / SETTINGS_FILE).write_text("{")
    with pytest.raises(RunDirError, match="settings.json is damaged"):
        RunLedger(run, SETTINGS)  # records exist: they cannot be vouched for, so no silent rewrite
    (run / SETTINGS_FILE).write_text(json.dumps({**SETTINGS, "seed": 1}))
    with pytest.raises(RunDirError, match=r"different compile \(settings differ in: seed\)"):
        RunLedger(run, SETTINGS)


def test_a_kill_while_writing_settings_leaves_no_partial_file(tmp_path, monkeypatch):
    def killed(src, dst):
        raise KeyboardInterrupt  # the process dies between writing the temporary file and renaming it

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        RunLedger(tmp_path / "run", SETTINGS)
    assert not (tmp_path / "run" / SETTINGS_FILE).exists()
    monkeypatch.undo()
    assert RunLedger(tmp_path / "run", SETTINGS).records == []
    assert json.loads((tmp_path / "run" / SETTINGS_FILE).read_text()) == SETTINGS


def test_a_run_directory_that_cannot_be_created_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match=r"cannot create the run directory .*file/run.*pass a writable --run-dir"):
        RunLedger(tmp_path / "file" / "run", SETTINGS)


def test_a_second_process_is_refused_the_run_dir_until_the_first_dies(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom honed.optimizers.ledger import RunLedger\n"
         f"RunLedger(sys.argv[1], {SETTINGS!r})\nprint('ready', flush=True)\ntime.sleep(60)", str(tmp_path / "run")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(RunDirError, match=rf"in use by another compile \(process {holder.pid}\)"):
            RunLedger(tmp_path / "run", SETTINGS)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    ledger = RunLedger(tmp_path / "run", SETTINGS)  # a killed compile leaves no stale lock
    ledger.append({"step": "a", "kind": "x"})
    ledger.close()
    assert [r["step"] for r in read_ledger(ledger.path)] == ["a"]
