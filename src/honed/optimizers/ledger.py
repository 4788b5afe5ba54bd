"""The run directory: an append-only JSONL ledger that is both the compile's log and its resume point.

Every step of a compile appends one record (`step` is its stable id). Records are flushed and
fsync'd as they are written, so a killed compile loses at most the line being written; a torn last
line is detected and skipped. Resuming replays the compile deterministically from the disk cache
(no paid call is repeated) and appends only the steps the ledger does not already hold.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from honed.errors import HonedError

logger = logging.getLogger(__name__)

LEDGER_FILE = "ledger.jsonl"
SETTINGS_FILE = "settings.json"


class RunDirError(HonedError):
    """A run directory belongs to a different compile, or its ledger is damaged beyond its last line."""


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


class RunLedger:
    """A run directory with `settings.json` (what was compiled, how) and `ledger.jsonl` (what happened)."""

    def __init__(self, run_dir: str | Path, settings: dict[str, Any]) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.path = self.run_dir / LEDGER_FILE
        settings_path = self.run_dir / SETTINGS_FILE
        canonical = json.loads(json.dumps(settings, sort_keys=True, default=str))
        if settings_path.exists():
            stored = json.loads(settings_path.read_text(encoding="utf-8"))
            if stored != canonical:
                changed = sorted(k for k in set(stored) | set(canonical) if stored.get(k) != canonical.get(k))
                raise RunDirError(f"{self.run_dir} holds a different compile (settings differ in: "
                                  f"{', '.join(changed)}); use another --run-dir or the same settings to resume")
        else:
            settings_path.write_text(json.dumps(canonical, indent=2, sort_keys=True), encoding="utf-8")
        self._repair_torn_tail()
        self.records = read_ledger(self.path)
        self._steps = {r.get("step") for r in self.records}
        self.resumed = bool(self.records)
        self._lock = threading.Lock()

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

    def has(self, step: str) -> bool:
        return step in self._steps

    def get(self, step: str) -> dict[str, Any] | None:
        return next((r for r in self.records if r.get("step") == step), None)

    def append(self, record: dict[str, Any]) -> bool:
        """Append a record unless its `step` is already in the ledger; returns whether it was written."""
        step = record["step"]
        with self._lock:
            if step in self._steps:
                return False
            line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            self._steps.add(step)
            self.records.append(record)
            return True
