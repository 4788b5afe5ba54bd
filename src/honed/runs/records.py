"""The ledger's records, typed: one class per kind an optimizer writes, the contract between a compile
and everything that reads its run directory (`honed report`, the diagnoses, the benchmarks).

Why typed: readers used to re-derive meaning from `kind` strings and from step ids (that
"r1/claim0/verify/<id>" verifies claim "r1/claim0" was known only to the code that wrote it). Now a
record says so in a field (`Verify.claim_step`, `Verify.edit_step`, `StepEdit.round_no`), and a step
id is only the record's stable name: the key a resumed compile skips written steps by.

Writing keeps the JSON of before: a record dumps exactly the fields its writer set, an explicit None
included (`exclude_unset`), so a key written as null before still is and an absent one stays absent;
records written now add `schema_version` and the explicit link fields. Reading: `parse_record` upgrades
a v1 record (one without `schema_version`) by deriving those fields from its step id — here, the only
place that parses step ids — and turns a record it cannot type (an unknown kind, one from a newer honed,
a damaged one) into an `UnknownRecord`, so that no ledger, old or new, crashes a reader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = ["SCHEMA_VERSION", "CandidateJson", "CandidateRecord", "Claim", "Demonstration", "DraftedProcedure",
           "ErrorRecord", "Final", "Minibatch", "Observe", "OptimizerCall", "Record", "ReferenceDemonstration",
           "StepEdit", "UnknownRecord", "Validate", "Verify", "parse_record", "parse_records"]

SCHEMA_VERSION = 2  # 1: the untyped records of honed <= 0.1 (no `schema_version` key)

# int | float, in this order: pydantic's smart union keeps a number's type, so 1 stays 1 and 1.0 stays 1.0
# (the report shows values as the ledger wrote them).
Number = int | float

_ACCOUNTING = ("budget_used", "paid_calls", "elapsed_s", "schema_version")


class CandidateJson(BaseModel):
    """A candidate program as `Candidate.to_json()` writes it: per predictor, its instructions and demo
    ids (and for behavior programs, its procedure and worked demonstrations)."""

    model_config = ConfigDict(extra="allow")

    id: str
    origin: str | None = None
    parent: str | None = None
    predictors: dict[str, dict[str, Any]] = {}


class Record(BaseModel):
    """What every record carries: its step id, its kind, and the compile's accounting when written."""

    model_config = ConfigDict(extra="allow")

    step: str
    kind: str
    budget_used: Number | None = None  # distinct model requests charged to the budget so far
    paid_calls: Number | None = None  # provider calls (cache misses) by this process so far
    elapsed_s: Number | None = None  # seconds since this process started the compile
    schema_version: int | None = None

    @property
    def version(self) -> int:
        return self.schema_version or 1

    def stamped(self, *, budget_used: int, paid_calls: int, elapsed_s: float) -> Record:
        """This record as the ledger stores it now: with the accounting and the current schema version."""
        return self.model_copy(update={"budget_used": budget_used, "paid_calls": paid_calls,
                                       "elapsed_s": elapsed_s, "schema_version": SCHEMA_VERSION})

    def to_json(self) -> dict[str, Any]:
        """The ledger line's object: step and kind first, the record's own fields as its writer set them,
        then the accounting. Python mode, so `json.dumps` spells every value as it did before records were
        typed (pydantic's JSON mode would, for one, write a NaN score as null)."""
        data = self.model_dump(exclude_unset=True)
        body = {k: v for k, v in data.items() if k not in ("step", "kind", *_ACCOUNTING)}
        return {"step": self.step, "kind": self.kind, **body, **{k: data[k] for k in _ACCOUNTING if k in data}}


class Validate(Record):
    """A candidate's score on validation examples (all of them, or a quarter while ranking).
    Written by every optimizer."""

    kind: Literal["validate"] = "validate"
    candidate: str  # candidate id
    n: int
    score: Number  # the plain mean
    phase: str | None = None  # "seed", "step0" (the drafted behavior), a round ("r1", "step2"), or "final"
    # The mean with each answer form weighted equally, where the optimizer ranks by it
    # (`honed.optimizers.objective`); absent where it ranks by `score`.
    balanced: Number | None = None


class HeldOut(Record):
    """A candidate's score on training examples held out of the whole search (BehaviorOptimizer's
    confirmation, run for the seed and the best candidate before the seed is replaced). Not validation:
    readers that rank by validation must not count it."""

    kind: Literal["held_out"] = "held_out"
    candidate: str
    n: int
    score: Number
    examples: list[str] = []  # the held-out examples' ids, in the order they were run


class CandidateRecord(Record):
    """A full candidate and its validation score (the seed, for ReflectiveRefine and DSPy's optimizers)."""

    kind: Literal["candidate"] = "candidate"
    candidate: CandidateJson
    val_score: Number | None = None


class Minibatch(Record):
    """ReflectiveRefine: the best candidate run on a training minibatch at the start of a round."""

    kind: Literal["minibatch"] = "minibatch"
    candidate: str
    n: int
    failures: int
    score: Number
    round_no: int | None = None


class Claim(Record):
    """ReflectiveRefine: one reflection on the failures shown: its cause and proposed instruction, or
    the error (and raw response) of a reflection that failed."""

    kind: Literal["claim"] = "claim"
    predictor: str | None = None
    shown: list[Any] | None = None  # example ids shown to the optimizer model
    cause: str | None = None
    explains: list[Any] | None = None  # 1-based positions in `shown` the claim says it explains
    new_instruction: str | None = None
    show_examples: bool | None = None
    error: str | None = None
    response: Any = None
    round_no: int | None = None
    claim_no: int | None = None

    @property
    def failed(self) -> bool:
        return self.error is not None


class Verify(Record):
    """A candidate run on the examples its edit targets and on a few passing ones; `held` is the verdict
    (it fixed at least one targeted example, and more than it broke). Written by ReflectiveRefine (for a
    claim) and BehaviorOptimizer (for a step edit or an added demonstration)."""

    kind: Literal["verify"] = "verify"
    candidate: CandidateJson
    claimed: int | None = None  # targeted examples
    fixed: int | None = None
    not_fixed: int | None = None
    regressions: int | None = None
    checked_passing: int | None = None
    held: bool | None = None
    targeted_ids: list[str] | None = None  # absent in ledgers of honed 0.1, which hold counts only
    fixed_ids: list[str] | None = None
    checked_ids: list[str] | None = None
    broken_ids: list[str] | None = None
    step_id: str | None = None  # behavior: the procedure step the edit is about
    round_no: int | None = None
    claim_step: str | None = None  # reflective: the step of the claim this candidate came from
    edit_step: str | None = None  # behavior: the step of the step edit this candidate came from


class DraftedProcedure(Record):
    """BehaviorOptimizer: the procedure drafted from the task (`origin` "drafted") or the fallback
    template when the draft failed ("template")."""

    kind: Literal["procedure"] = "procedure"
    origin: str | None = None
    procedure: dict[str, Any] | None = None

    def instructions(self) -> list[str]:
        """The steps' instructions, in order (steps written as plain strings are taken as they are)."""
        steps = (self.procedure or {}).get("steps")
        found = [s.get("instruction") if isinstance(s, Mapping) else s for s in steps or []]
        return [s for s in found if isinstance(s, str)]


class Demonstration(Record):
    """BehaviorOptimizer: the optimizer model, as a teacher, carried out the procedure on a training
    example; `accepted` when its answer was right. `echoed`: how many of its steps only restate their
    own instruction (`honed.optimizers.behavior.restates`)."""

    kind: Literal["demonstration"] = "demonstration"
    example: str | None = None
    accepted: bool | None = None
    steps: list[Any] | None = None
    error: str | None = None
    echoed: int | None = None


class ReferenceDemonstration(Record):
    """BehaviorOptimizer: an example the teacher got wrong, demonstrated by a reference execution (the
    optimizer model told the correct answer); `echoed` as in `Demonstration`."""

    kind: Literal["reference_demonstration"] = "reference_demonstration"
    example: str | None = None
    accepted: bool | None = None
    steps: list[Any] | None = None
    echoed: int | None = None


class Observe(Record):
    """BehaviorOptimizer: the target ran the procedure on a minibatch; per step, the fraction of runs that
    followed it, and where the failing runs first departed from the reference (step id -> count)."""

    kind: Literal["observe"] = "observe"
    candidate: str
    n: int | None = None
    failures: int | None = None
    following: dict[str, Number] = {}
    departures: dict[str, int] = {}
    round_no: int | None = None


class StepEdit(Record):
    """BehaviorOptimizer: a repair of one procedure step proposed by the optimizer model (rewrite, split,
    or add a check before it), and the procedure it gives (None when the edit changes nothing)."""

    kind: Literal["step_edit"] = "step_edit"
    step_id: str | None = None
    action: str | None = None
    new_step: str | None = None
    second_step: str | None = None
    procedure: dict[str, Any] | None = None
    round_no: int | None = None
    edit_no: int | None = None


class ErrorRecord(Record):
    """BehaviorOptimizer: an optimizer-model call that failed (its step names the call); the compile went on."""

    kind: Literal["error"] = "error"
    error: str | None = None


class OptimizerCall(Record):
    """DSPy's optimizers: how DSPy's compile ended and the program it returned."""

    kind: Literal["optimizer"] = "optimizer"
    optimizer: str | None = None
    dspy_optimizer: str | None = None
    status: str | None = None
    stop_reason: str | None = None
    returned_program: bool | None = None
    hyperparameters: dict[str, Any] | None = None
    optimizer_requests: Number | None = None
    wall_s: Number | None = None
    candidate: CandidateJson | None = None


class Final(Record):
    """The program a compile returned and why it stopped; the last record of a finished compile. The
    fields after `gain_over_seed` belong to one optimizer each (claims: ReflectiveRefine; step_scores,
    following, edits: BehaviorOptimizer; optimizer_val_score, fell_back_to_seed, note: DSPy's)."""

    kind: Literal["final"] = "final"
    candidate: CandidateJson | None = None
    val_score: Number | None = None  # on `val_objective`, as is baseline_val_score
    baseline_val_score: Number | None = None
    val_objective: str | None = None  # "mean" or "balanced" (`honed.optimizers.objective`); None: "mean"
    gain_over_seed: dict[str, Any] | None = None  # the paired sign test of the best candidate vs the seed
    optimizer_val_score: Number | None = None
    claims: int | None = None
    claims_held: int | None = None
    step_scores: list[dict[str, Any]] | None = None
    following: dict[str, Number] | None = None
    edits: int | None = None
    edits_held: int | None = None
    stop_reason: str | None = None
    fell_back_to_seed: bool | None = None
    note: str | None = None


class UnknownRecord(Record):
    """A record this honed cannot type: kept as written, so readers can still show it."""

    budget_used: Any = None
    paid_calls: Any = None
    elapsed_s: Any = None
    schema_version: Any = None


KnownRecord = Annotated[Union[Validate, HeldOut, CandidateRecord, Minibatch, Claim, Verify, DraftedProcedure,  # noqa: UP007
                              Demonstration, ReferenceDemonstration, Observe, StepEdit, ErrorRecord, OptimizerCall,
                              Final], Field(discriminator="kind")]
_KNOWN: TypeAdapter[Any] = TypeAdapter(KnownRecord)


def parse_record(raw: Mapping[str, Any]) -> Record:
    """The typed record of one ledger line (upgraded when it is v1); an `UnknownRecord` when it has an
    unknown kind or does not fit its kind's fields."""
    data = dict(raw)
    if data.get("schema_version") is None:
        data = _upgrade_v1(data)
    try:
        return _KNOWN.validate_python(data)
    except ValidationError:
        return UnknownRecord.model_validate({**data, "step": str(data.get("step", "")),
                                             "kind": str(data.get("kind", ""))})


def parse_records(raws: Iterable[Any]) -> list[Record]:
    """The typed records of a ledger, in order (lines that are not JSON objects are left out), v1 records
    upgraded, including the links that only the order of a v1 ledger tells."""
    records = [parse_record(raw) for raw in raws if isinstance(raw, Mapping)]
    _link_v1_step_edits(records)
    return records


# ----------------------------------------------------------------------------------------- v1 upgrade
# Step ids of honed <= 0.1, parsed here and nowhere else.
_ROUND = re.compile(r"^(?:r|step)(\d+)/")
_CLAIM = re.compile(r"^(r(\d+)/claim(\d+))(?:/|$)")
_EDIT = re.compile(r"^step(\d+)/fix(\d+)$")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Fill the explicit fields a v1 record encoded in its step id (only those it lacks)."""
    step, kind = str(data.get("step", "")), data.get("kind")
    derived: dict[str, Any] = {}
    round_match, claim_match, edit_match = _ROUND.match(step), _CLAIM.match(step), _EDIT.match(step)
    if kind == "validate":
        derived["phase"] = step.split("/")[0]
    elif kind in ("minibatch", "observe", "verify") and round_match:
        derived["round_no"] = int(round_match[1])
    if kind == "claim" and claim_match:
        derived.update(round_no=int(claim_match[2]), claim_no=int(claim_match[3]))
    elif kind == "verify" and claim_match and "/verify/" in step:
        derived["claim_step"] = claim_match[1]
    elif kind == "step_edit" and edit_match:
        derived.update(round_no=int(edit_match[1]), edit_no=int(edit_match[2]))
    return {**data, **{k: v for k, v in derived.items() if data.get(k) is None}}


def _link_v1_step_edits(records: list[Record]) -> None:
    """A v1 behavior verification does not name its step edit: its candidate came from the edit proposed
    last in its round, unless the fix call after that edit failed (an `error` record at a fix step)."""
    last_edit: dict[int, str | None] = {}
    for record in records:
        if record.version != 1:
            continue
        if isinstance(record, StepEdit) and record.round_no is not None:
            last_edit[record.round_no] = record.step
        elif isinstance(record, ErrorRecord) and (match := _EDIT.match(record.step)):
            last_edit[int(match[1])] = None
        elif (isinstance(record, Verify) and record.claim_step is None and record.edit_step is None
              and record.round_no is not None and (record.candidate.origin or "").startswith("fix:")):
            record.edit_step = last_edit.get(record.round_no)
