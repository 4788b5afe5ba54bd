"""Where a compile's budget went: its model requests per activity (validating the seed, proposing,
demonstrating, racing and ranking candidates, observing and verifying, the held-out confirmation).

Each record carries `budget_used`, the distinct model requests charged so far, and is written after the
requests it reports; so the requests between one record and the one before it belong to the later
record's activity. The activity comes from the record's type (and a validation's phase), never from its
step id. A reader sees, for one run (`honed report`) or many (`benchmarks/budget_spent.py`), what the
budget bought: at a budget of 100, for instance, whether anything was left for refinement after the
first race.
"""

from __future__ import annotations

from collections.abc import Iterable

from honed.runs.records import (
    Claim,
    Demonstration,
    DraftedProcedure,
    ErrorRecord,
    HeldOut,
    Minibatch,
    Observe,
    OptimizerCall,
    Record,
    ReferenceDemonstration,
    StepEdit,
    Validate,
    Verify,
)

SEED = "validating the seed"
PROPOSING = "proposing (optimizer model)"
DEMONSTRATING = "demonstrating (optimizer model)"
RACING = "validating candidates"
OBSERVING = "observing and verifying on training examples"
CONFIRMING = "held-out confirmation"
DSPY = "DSPy's optimizer"
OTHER = "other"

# In the order a compile goes through them; `spending` lists activities in this order.
ACTIVITIES = (SEED, PROPOSING, DEMONSTRATING, RACING, OBSERVING, CONFIRMING, DSPY, OTHER)


def activity(record: Record) -> str:
    """The activity the requests reported by `record` belong to."""
    if isinstance(record, Validate):
        return SEED if record.phase == "seed" else RACING
    if isinstance(record, HeldOut):
        return CONFIRMING
    if isinstance(record, DraftedProcedure | Claim | StepEdit | ErrorRecord):  # an error: a failed proposal call
        return PROPOSING
    if isinstance(record, Demonstration | ReferenceDemonstration):
        return DEMONSTRATING
    if isinstance(record, Minibatch | Observe | Verify):
        return OBSERVING
    if isinstance(record, OptimizerCall):
        return DSPY
    return OTHER


def spending(records: Iterable[Record]) -> dict[str, int]:
    """Requests charged to the budget per activity, in `ACTIVITIES` order, activities with none left out.
    A record without a numeric `budget_used`, or with one no higher than the last count seen, is charged
    nothing (so the counts always sum to the highest `budget_used` in the ledger)."""
    spent: dict[str, int] = {}
    used = 0
    for record in records:
        now = record.budget_used
        if not isinstance(now, int | float) or isinstance(now, bool) or now <= used:
            continue
        name = activity(record)
        spent[name] = spent.get(name, 0) + int(now - used)
        used = int(now)
    return {name: spent[name] for name in ACTIVITIES if name in spent}
