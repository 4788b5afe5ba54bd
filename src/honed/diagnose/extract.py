"""The reflections of honed's own optimizers, read from their run ledger.

The ledger holds exactly the fields that are reflections, apart from the examples the optimizer was
shown: a `reflective` claim's cause and proposed instruction, a `behavior` step edit's new step(s), and the
procedure the behavior optimizer drafted from the task (its reading of the data before any error). A
reflection that failed to parse keeps the raw response the ledger recorded. DSPy's optimizers record no
reflections in the ledger (their outputs are captured instead, `honed.diagnose.capture`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from honed.diagnose.capture import prose_of
from honed.runs.records import Claim, DraftedProcedure, Record, StepEdit


def _join(*parts: Any) -> str:
    return "\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def ledger_reflections(records: Iterable[Record]) -> list[tuple[str, str, str]]:
    """(kind, ledger step, text) for every reflection among a run's records, in ledger order."""
    found: list[tuple[str, str, str]] = []
    for record in records:
        if isinstance(record, Claim):
            if record.failed:
                text = prose_of(record.response) if isinstance(record.response, str) else ""
            else:
                text = _join(record.cause, record.new_instruction)
            if text:
                found.append(("claim", record.step, text))
        elif isinstance(record, StepEdit):
            text = _join(record.new_step, record.second_step)
            if text:
                found.append(("step_edit", record.step, text))
        elif isinstance(record, DraftedProcedure) and record.origin == "drafted":
            text = _join(*record.instructions())
            if text:
                found.append(("draft", record.step, text))
    return found
