"""Moved to `honed.runs.ledger`, where the run directory's contract lives; this name keeps old imports working."""

from honed.runs.ledger import (
    ADDED_SETTINGS,
    LEDGER_FILE,
    LOCK_FILE,
    SETTINGS_FILE,
    SHOWN_SETTINGS,
    RunDirError,
    RunLedger,
    final_record,
    read_ledger,
    read_settings,
)

__all__ = ["ADDED_SETTINGS", "LEDGER_FILE", "LOCK_FILE", "SETTINGS_FILE", "SHOWN_SETTINGS", "RunDirError",
           "RunLedger", "final_record", "read_ledger", "read_settings"]
