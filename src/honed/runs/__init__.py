"""The contract between what writes a compile's run directory and what reads it.

`records`: one typed record per kind of ledger line, with the upgrade of older ledgers. `ledger`: the
append-only, fsync'd, locked `ledger.jsonl` and `settings.json`. `run`: `Run`, one run directory read
back for reports, diagnoses and benchmarks. `source`: what a report or a diagnosis is pointed at (a run
directory, its ledger, or an artifact naming its run) resolved to a run directory.
"""

from honed.runs.ledger import (
    LEDGER_FILE,
    SETTINGS_FILE,
    RunDirError,
    RunLedger,
    final_record,
    read_ledger,
    read_settings,
)
from honed.runs.records import SCHEMA_VERSION, Record, parse_record, parse_records
from honed.runs.run import Run
from honed.runs.source import run_dir_of

__all__ = ["LEDGER_FILE", "SCHEMA_VERSION", "SETTINGS_FILE", "Record", "Run", "RunDirError", "RunLedger",
           "final_record", "parse_record", "parse_records", "read_ledger", "read_settings", "run_dir_of"]
