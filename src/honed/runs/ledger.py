"""The run directory: an append-only JSONL ledger that is both the compile's log and its resume point.

Every step of a compile appends one record (`step` is its stable id). Records are flushed and
fsync'd as they are written, so a killed compile loses at most the line being written; a torn last
line is detected, skipped, and cut before the next append. `settings.json` is written atomically
(temporary file, fsync, rename), so a kill during a compile's first moments never leaves half of it.
Resuming replays the compile deterministically from the disk cache (no paid call is repeated) and
appends only the steps the ledger does not already hold.

A compile holds a lock on its run directory (`lock`, a POSIX record lock that the system drops when
the process dies, so a killed compile leaves no stale lock): a second process given the same run
directory is refused instead of interleaving its records with the first one's.

What a record holds is `honed.runs.records`; this module only stores and reads lines. (It lived in
`honed.optimizers.ledger`, which still re-exports it.)
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from honed.errors import RunDirError
from honed.files import fsync_directory, write_atomically
from honed.runs.records import Record

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"
SETTINGS_FILE = "settings.json"
LOCK_FILE = "lock"


def read_ledger(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ledger file; a torn (unparseable) last line is skipped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            if all(not rest.strip() for rest in lines[number:]):
                logger.warning("%s:%d: torn last line skipped (the compile was interrupted mid-write)", path, number)
                break
            raise RunDirError(f"{path}:{number}: ledger line is not valid JSON; the run cannot be resumed") from None
        records.append(record)
    return records


def read_settings(run_dir: str | Path) -> dict[str, Any]:
    """A run directory's `settings.json` as written; {} when it is missing or unreadable (readers such as
    reports show what they can; resuming checks it strictly in `RunLedger`)."""
    path = Path(run_dir) / SETTINGS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def final_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The compile's `final` record (the last one, should a ledger hold several), or None while unfinished
    (the dict view; `honed.runs.Run.final` is the typed one)."""
    return next((r for r in reversed(records) if r.get("kind") == "final"), None)


class RunLedger:
    """A run directory with `settings.json` (what was compiled, how) and `ledger.jsonl` (what happened)."""

    def __init__(self, run_dir: str | Path, settings: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create the run directory {self.run_dir} ({exc.strerror or exc}); "
                              "pass a writable --run-dir") from exc
        self._lock_fd = _lock_run_dir(self.run_dir)
        self.path = self.run_dir / LEDGER_FILE
        canonical = json.loads(json.dumps(settings, sort_keys=True, default=str))
        try:
            stored = self._stored_settings()
            if stored is not None and _upgradable(stored, canonical):
                logger.warning("%s: settings from an older honed gained %s", self.run_dir,
                               ", ".join(sorted(set(canonical) - set(stored))))
                stored = None
            if stored is None:
                write_atomically(self.run_dir / SETTINGS_FILE, json.dumps(canonical, indent=2, sort_keys=True))
            elif stored != canonical:
                raise RunDirError(f"{self.run_dir} holds a different compile ({_differences(stored, canonical)}); "
                                  "use another --run-dir, or the same settings and models to resume")
        except BaseException:
            self.close()
            raise
        self._repair_torn_tail()
        self.records = read_ledger(self.path)
        self._steps = {r.get("step") for r in self.records}
        self.resumed = bool(self.records)
        self._lock = threading.Lock()

    def _stored_settings(self) -> dict[str, Any] | None:
        """The settings a previous compile wrote here; None when there are none worth keeping.

        Settings are written atomically, so an unreadable file comes from elsewhere (an older honed, a
        disk fault); it is rewritten only while the ledger holds no record that it would vouch for.
        """
        path = self.run_dir / SETTINGS_FILE
        if not path.exists():
            return None
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(stored, dict):
                return stored
        except (UnicodeDecodeError, json.JSONDecodeError):
            pass
        if self.path.exists() and self.path.read_bytes().strip():
            raise RunDirError(f"{path} is damaged but {self.path} holds records, so the run cannot be resumed "
                              "safely; use another --run-dir")
        logger.warning("%s: unreadable settings from an interrupted start rewritten", path)
        return None

    def _repair_torn_tail(self) -> None:
        """Cut a torn last line so that appends start on a fresh line."""
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            with self.path.open("r+b") as handle:
                handle.truncate(cut)
            logger.warning("%s: torn last line removed before resuming", self.path)

    def close(self) -> None:
        """Release the run directory's lock (also released when the process ends)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def has(self, step: str) -> bool:
        return step in self._steps

    def get(self, step: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("step") == step), None)

    def append(self, record: Record | dict[str, Any]) -> bool:
        """Append a record unless its `step` is already in the ledger; returns whether it was written."""
        if isinstance(record, Record):
            record = record.to_json()
        step = record["step"]
        with self._lock:
            if step in self._steps:
                return False
            line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
            created = not self.path.exists()
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            if created:  # the file's name must survive a crash as well as its bytes
                fsync_directory(self.run_dir)
            self._steps.add(step)
            self.records.append(record)
            return True


# Settings that older run directories lack: a run written before they were recorded resumes and gains them
# (its other settings, the model strings included, must still match).
ADDED_SETTINGS = frozenset({"task_model_identity", "optimizer_model_identity"})
# Settings whose old and new values an error shows, since "differ in" alone does not say which model moved.
SHOWN_SETTINGS = ("task_model", "optimizer_model", "task_model_identity", "optimizer_model_identity")


# A run recorded before optimizers carried a search revision ran revision 1 of its optimizer's search.
FIRST_REVISION = 1


def _upgradable(stored: dict[str, Any], canonical: dict[str, Any]) -> bool:
    missing = set(canonical) - set(stored)
    # a run from before revisions were recorded ran its optimizer's first revision: it resumes under that one
    # only; a later revision of the search is another search, whose records must not join the old ones
    added = ADDED_SETTINGS | ({"revision"} if canonical.get("revision") == FIRST_REVISION else set())
    return bool(missing) and missing <= added and all(stored[k] == canonical.get(k) for k in stored)


def _differences(stored: dict[str, Any], canonical: dict[str, Any]) -> str:
    changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
    shown = [f"{k} was {stored.get(k)!r}, now {canonical.get(k)!r}" for k in SHOWN_SETTINGS if k in changed]
    return f"settings differ in: {', '.join(changed)}" + (f"; {'; '.join(shown)}" if shown else "")


def _lock_run_dir(run_dir: Path) -> int | None:
    """Lock `run_dir` for this process; RunDirError naming the holder when another process has it.

    `lockf` (not `flock`) because its locks belong to the process: a process may open its own run
    directory again (a report during a compile, tests), while a second process is refused. None where
    the platform has no `fcntl` (Windows): there the directory is not locked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(f"{run_dir} is in use by another compile (process {holder}); wait for it to finish "
                          "or pass another --run-dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
