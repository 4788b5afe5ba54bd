"""The reflections of honed's own optimizers, read from their run ledger.

The ledger holds exactly the fields that are reflections, apart from the examples the optimizer was
shown: a `reflective` claim's cause and proposed instruction, a `behavior` step edit's new step(s), and the
procedure the behavior optimizer drafted from the task (its reading of the data before any error). A
reflection that failed to parse keeps the raw response the ledger recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from honed.diagnose.capture import prose_of

LEDGER_OPTIMIZERS = ("reflective", "behavior")


def _join(*parts: Any) -> str:
    return "\n".join(str(p).strip() for p in parts if isinstance(p, str) and p.strip())


def ledger_reflections(records: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(kind, ledger step, text) for every reflection in a ledger, in ledger order."""
    found: list[tuple[str, str, str]] = []
    for record in records:
        kind, step = record.get("kind"), str(record.get("step"))
        if kind == "claim":
            if "error" in record:
                response = record.get("response")
                text = prose_of(response) if isinstance(response, str) else ""
            else:
                text = _join(record.get("cause"), record.get("new_instruction"))
            if text:
                found.append(("claim", step, text))
        elif kind == "step_edit":
            text = _join(record.get("new_step"), record.get("second_step"))
            if text:
                found.append(("step_edit", step, text))
        elif kind == "procedure" and record.get("origin") == "drafted":
            procedure = record.get("procedure") or {}
            steps = procedure.get("steps") if isinstance(procedure, Mapping) else None
            text = _join(*[s.get("instruction") for s in steps or [] if isinstance(s, Mapping)])
            if text:
                found.append(("draft", step, text))
    return found
