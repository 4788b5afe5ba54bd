"""Run: one run directory read back as typed records, for everything that reads a compile after the fact
(`honed report`, `honed diagnose following`, the reflection diagnosis, the benchmarks).

Readers ask a `Run` for what they need — the seed, the final record, the claims and the verifications
of each, the step edits, the observations — instead of filtering dicts by `kind` and parsing step ids,
so a change to what an optimizer writes is made in `honed.runs.records` and read the same everywhere.
Reading never writes: an old ledger is upgraded in memory, never rewritten in place.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

from honed.runs.ledger import LEDGER_FILE, read_ledger, read_settings
from honed.runs.records import (
    CandidateJson,
    CandidateRecord,
    Claim,
    Demonstration,
    DraftedProcedure,
    ErrorRecord,
    Final,
    HeldOut,
    Minibatch,
    Observe,
    OptimizerCall,
    Record,
    ReferenceDemonstration,
    StepEdit,
    UnknownRecord,
    Validate,
    Verify,
    parse_records,
)
from honed.runs.spending import spending

R = TypeVar("R", bound=Record)


class Run:
    """The settings and the typed records of one run directory, and the views readers share."""

    def __init__(self, run_dir: str | Path, records: list[Record], settings: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.records = records
        self.settings = settings or {}

    @classmethod
    def open(cls, run_dir: str | Path) -> Run:
        """Read `run_dir` (its `settings.json` and `ledger.jsonl`); a missing ledger reads as no records.
        A ledger damaged before its last line raises `RunDirError`."""
        run_dir = Path(run_dir)
        return cls(run_dir, parse_records(read_ledger(run_dir / LEDGER_FILE)), read_settings(run_dir))

    def of(self, kind: type[R]) -> list[R]:
        """The records of one class, in ledger order."""
        return [r for r in self.records if isinstance(r, kind)]

    # -- what the compile did ---------------------------------------------------------------------
    @property
    def final(self) -> Final | None:
        """The compile's final record (the last one, should a ledger hold several); None while unfinished."""
        finals = self.of(Final)
        return finals[-1] if finals else None

    @property
    def validations(self) -> list[Validate]:
        return self.of(Validate)

    @property
    def held_out(self) -> list[HeldOut]:
        return self.of(HeldOut)

    @property
    def claims(self) -> list[Claim]:
        return self.of(Claim)

    @property
    def verifications(self) -> list[Verify]:
        return self.of(Verify)

    @property
    def step_edits(self) -> list[StepEdit]:
        return self.of(StepEdit)

    @property
    def observations(self) -> list[Observe]:
        return self.of(Observe)

    @property
    def demonstrations(self) -> list[Demonstration | ReferenceDemonstration]:
        """Worked examples, taught by the optimizer model or by reference execution, in ledger order."""
        return [r for r in self.records if isinstance(r, Demonstration | ReferenceDemonstration)]

    @property
    def spending(self) -> dict[str, int]:
        """Requests charged to the budget per activity (`honed.runs.spending`), in the order a compile goes."""
        return spending(self.records)

    @property
    def errors(self) -> list[ErrorRecord]:
        return self.of(ErrorRecord)

    @property
    def procedure(self) -> DraftedProcedure | None:
        """The procedure the behavior optimizer started from (drafted, or its template fallback)."""
        drafts = self.of(DraftedProcedure)
        return drafts[0] if drafts else None

    @property
    def dspy_call(self) -> OptimizerCall | None:
        calls = self.of(OptimizerCall)
        return calls[-1] if calls else None

    @property
    def unknown(self) -> list[UnknownRecord]:
        return self.of(UnknownRecord)

    def verifications_of_claim(self, claim: Claim) -> list[Verify]:
        return [v for v in self.verifications if v.claim_step == claim.step]

    def verifications_of_edit(self, edit: StepEdit) -> list[Verify]:
        return [v for v in self.verifications if v.edit_step == edit.step]

    def observation(self, round_no: int | None) -> Observe | None:
        """What the behavior optimizer observed at the start of refinement round `round_no`."""
        return next((o for o in self.observations if round_no is not None and o.round_no == round_no), None)

    # -- who wrote it -------------------------------------------------------------------------------
    @property
    def dspy_optimizer(self) -> str | None:
        """DSPy's optimizer class name when one of DSPy's optimizers wrote this run, else None."""
        named = self.settings.get("dspy_optimizer")
        if isinstance(named, str):
            return named
        call = self.dspy_call
        return call.dspy_optimizer if call is not None else None

    @property
    def family(self) -> str | None:
        """"reflective", "behavior" or "dspy": whose records the run holds (a run killed before its
        optimizer wrote any of its own records falls back to the optimizer its settings name)."""
        final = self.final
        if self.dspy_optimizer is not None:
            return "dspy"
        if self.claims or self.of(Minibatch) or (final is not None and final.claims is not None):
            return "reflective"
        if (self.procedure or self.observations or self.step_edits or self.demonstrations
                or (final is not None and final.edits is not None)):
            return "behavior"
        optimizer = self.settings.get("optimizer")
        return optimizer if isinstance(optimizer, str) else None

    @property
    def optimizer(self) -> str | None:
        """The optimizer's name as its settings give it; else what its records tell."""
        optimizer = self.settings.get("optimizer")
        return optimizer if isinstance(optimizer, str) else self.family

    # -- candidates -----------------------------------------------------------------------------------
    @cached_property
    def candidates(self) -> dict[str, CandidateJson]:
        """Every full candidate the ledger holds, by id (the first record that holds it)."""
        found: dict[str, CandidateJson] = {}
        for record in self.records:
            candidate = getattr(record, "candidate", None)
            if isinstance(candidate, CandidateJson):
                found.setdefault(candidate.id, candidate)
        return found

    @property
    def seed(self) -> CandidateJson | None:
        """The seed program as recorded (ReflectiveRefine and DSPy's optimizers record it in full)."""
        return next((r.candidate for r in self.of(CandidateRecord) if r.candidate.origin == "seed"), None)

    @property
    def seed_id(self) -> str | None:
        seed = self.seed
        if seed is not None:
            return seed.id
        return next((v.candidate for v in self.validations if v.phase == "seed"), None)

    def lineage_ids(self, candidate_id: str | None) -> list[str]:
        """`candidate_id`, its parent, and so on up to the first id whose parent the ledger does not know."""
        chain: list[str] = []
        node = candidate_id
        while node is not None and node not in chain:
            chain.append(node)
            known = self.candidates.get(node)
            node = known.parent if known is not None else None
        return chain

    def lineage(self, candidate: CandidateJson) -> list[CandidateJson]:
        """`candidate` and its ancestors whose full JSON the ledger holds, newest first."""
        chain = [candidate]
        node = candidate.parent
        while node in self.candidates and all(c.id != node for c in chain):
            chain.append(self.candidates[node])
            node = self.candidates[node].parent
        return chain
