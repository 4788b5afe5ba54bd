"""The run directory's contract: typed records, the upgrade of v1 ledgers, and `Run`, the reader.

`tests/ledgers_v1/` holds run directories written by honed before records were typed (fake-model
compiles of each optimizer family): they must keep reading, and reporting, as they did.
"""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest

from honed.diagnose import diagnose_following
from honed.report import build_report
from honed.runs import Run, RunDirError, RunLedger, parse_record, read_ledger, read_settings
from honed.runs.records import (
    SCHEMA_VERSION,
    Claim,
    Final,
    StepEdit,
    UnknownRecord,
    Validate,
    Verify,
)

V1 = Path(__file__).parent / "ledgers_v1"
KINDS = ("behavior", "reflective", "dspy")


def _lines(name: str) -> list[dict]:
    return [json.loads(line) for line in (V1 / name / "ledger.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("name", KINDS)
def test_every_v1_record_is_typed_and_keeps_what_it_wrote(name):
    run = Run.open(V1 / name)
    raw = _lines(name)
    assert len(run.records) == len(raw) and not run.unknown
    for line, record in zip(raw, run.records, strict=True):
        assert record.version == 1 and record.step == line["step"] and record.kind == line["kind"]
        written = record.to_json()
        # the same keys with the same JSON spelling, in the same order (upgrades only add fields)
        assert json.dumps({k: written[k] for k in line}) == json.dumps(line)
        assert list(written)[:2] == ["step", "kind"]


def test_a_v1_behavior_ledger_gains_the_links_its_step_ids_encoded():
    run = Run.open(V1 / "behavior")
    assert run.family == run.optimizer == "behavior" and run.dspy_optimizer is None
    assert [v.phase for v in run.validations] == ["seed", "step0", "step2", "step2"]
    assert run.seed_id == run.validations[0].candidate
    assert [(e.step, e.round_no, e.edit_no) for e in run.step_edits] == [("step2/fix1", 2, 1), ("step2/fix2", 2, 2)]
    assert [o.round_no for o in run.observations] == [1, 2]
    # fix candidates belong to the edit proposed just before them; demonstration candidates to none
    links = {v.candidate.origin: set() for v in run.verifications}
    for verify in run.verifications:
        links[verify.candidate.origin].add(verify.edit_step)
        assert verify.round_no == int(verify.step[4]) and verify.claim_step is None
    assert links == {"demonstration": {None}, "fix:rewrite": {"step2/fix1", "step2/fix2"}}
    held = {e.step: [v.held for v in run.verifications_of_edit(e)] for e in run.step_edits}
    assert held == {"step2/fix1": [False], "step2/fix2": [True]}
    assert (run.final.edits, run.final.edits_held) == (2, 1)  # verification rate 0.5
    assert [e.step for e in run.errors] == ["step1/fix0", "step2/fix0"]
    assert run.procedure.instructions() == ["Read the sentence.", "Answer positive."]
    assert len(run.demonstrations) == 6
    assert run.lineage_ids(run.final.candidate.id)[-1] == run.validations[1].candidate  # ... back to the draft


def test_a_v1_reflective_ledger_links_each_verification_to_its_claim():
    run = Run.open(V1 / "reflective")
    assert run.family == "reflective"
    assert [(c.step, c.round_no, c.claim_no, c.failed) for c in run.claims] == [
        ("r1/claim0", 1, 0, True), ("r2/claim0", 2, 0, False), ("r2/claim1", 2, 1, False)]
    assert all(run.verifications_of_claim(c) == [v for v in run.verifications if v.step.startswith(c.step + "/")]
               for c in run.claims)
    assert run.seed is not None and run.seed.origin == "seed" and run.seed_id == run.seed.id


def test_a_v1_dspy_ledger_names_dspys_optimizer():
    run = Run.open(V1 / "dspy")
    assert run.family == "dspy" and run.dspy_optimizer == "BootstrapFewShot" and run.optimizer == "bootstrap"
    assert run.dspy_call.returned_program is True and run.final.fell_back_to_seed is False


def test_reading_a_run_never_writes_it(tmp_path):
    run_dir = tmp_path / "behavior"
    shutil.copytree(V1 / "behavior", run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir()}
    Run.open(run_dir)
    build_report(run_dir)
    diagnose_following(run_dir)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir()} == before


def test_the_report_of_a_v1_behavior_run_shows_the_behavior_not_claims():
    page = build_report(V1 / "behavior")
    assert "claims made" not in page and 'id="other"' not in page and 'id="claims"' not in page
    behavior = page[page.index('id="behavior"'):page.index("</section>", page.index('id="behavior"'))]
    for text in ("Read the sentence.", "Answer positive.", "Answer carefully.",
                 "Answer negative if the film is bad, else positive."):
        assert html.escape(text) in behavior
    assert "<code>step2/fix1</code>" in behavior and "<code>step2/fix2</code>" in behavior
    assert 'class="badge ok">held<' in behavior and 'class="badge bad">rejected<' in behavior
    assert "50.0%" in page and "1 of 2 step edits held" in page


def test_the_report_of_v1_reflective_and_dspy_runs():
    page = build_report(V1 / "reflective")
    claims = page[page.index('id="claims"'):]
    assert "2 claim(s) made, 1 held" in claims and "reflection failed" in claims and 'id="behavior"' not in page
    page = build_report(V1 / "dspy")
    assert 'id="dspy"' in page and "BootstrapFewShot" in page and "claims made" not in page
    assert 'id="other"' not in page


def test_diagnose_following_reads_a_v1_behavior_run():
    result = diagnose_following(V1 / "behavior")
    edits = [r for r in result["refinements"] if r["kind"] == "step_edit"]
    assert [e["about"]["edit"] for e in edits] == ["step2/fix1", "step2/fix2"]
    assert [e["accepted"] for e in edits] == [False, True]
    assert all(e["about"]["following_before"] == 1 / 3 for e in edits)
    assert {r["kind"] for r in result["refinements"]} == {"step_edit", "demonstration"}


def test_a_record_written_now_keeps_explicit_nulls_and_leaves_out_what_was_not_set():
    record = Claim(step="r1/claim0", predictor="p", shown=["e1"], error="ParseError: x", response=None, round_no=1,
                   claim_no=0).stamped(budget_used=3, paid_calls=2, elapsed_s=0.5)
    assert record.to_json() == {"step": "r1/claim0", "kind": "claim", "predictor": "p", "shown": ["e1"],
                                "error": "ParseError: x", "response": None, "round_no": 1, "claim_no": 0,
                                "budget_used": 3, "paid_calls": 2, "elapsed_s": 0.5,
                                "schema_version": SCHEMA_VERSION}
    assert "cause" not in record.to_json()  # a failed claim never had one
    parsed = parse_record(json.loads(json.dumps(record.to_json())))
    assert isinstance(parsed, Claim) and parsed.to_json() == record.to_json() and parsed.failed


def test_scores_keep_their_spelling():
    assert parse_record({"step": "a", "kind": "validate", "candidate": "c", "n": 4, "score": 1}).score.__class__ is int
    record = parse_record({"step": "a", "kind": "validate", "candidate": "c", "n": 4, "score": 1.0})
    assert isinstance(record, Validate) and json.dumps(record.to_json()["score"]) == "1.0"


def test_unknown_and_damaged_records_never_crash_a_reader():
    unknown = parse_record({"step": "x/1", "kind": "from_the_future", "payload": {"a": 1}, "budget_used": "?"})
    assert isinstance(unknown, UnknownRecord) and unknown.kind == "from_the_future"
    assert unknown.to_json() == {"step": "x/1", "kind": "from_the_future", "payload": {"a": 1}, "budget_used": "?"}
    damaged = parse_record({"step": "s", "kind": "verify", "candidate": "not a candidate"})
    assert isinstance(damaged, UnknownRecord) and damaged.kind == "verify"
    assert parse_record({"kind": "final"}).step == ""  # Final needs a step: kept as unknown, not lost
    run = Run("nowhere", [parse_record(r) for r in ({"step": "s", "kind": 3}, {"step": "f", "kind": "final"})])
    assert isinstance(run.final, Final) and len(run.unknown) == 1


def test_only_v1_records_are_upgraded():
    """A v2 record says what it links to; its step id is never parsed, even when it looks like a v1 one."""
    v2 = parse_record({"step": "r1/claim0/verify/abc", "kind": "verify", "candidate": {"id": "abc"},
                       "schema_version": SCHEMA_VERSION})
    assert isinstance(v2, Verify) and v2.claim_step is None and v2.round_no is None
    v1 = parse_record({"step": "r1/claim0/verify/abc", "kind": "verify", "candidate": {"id": "abc"}})
    assert (v1.claim_step, v1.round_no) == ("r1/claim0", 1)
    explicit = parse_record({"step": "step3/fix1", "kind": "step_edit", "round_no": 7})
    assert isinstance(explicit, StepEdit) and (explicit.round_no, explicit.edit_no) == (7, 1)  # fills only gaps


def test_the_ledger_appends_typed_records_and_old_import_paths_still_work(tmp_path):
    from honed.optimizers import read_ledger as old_read_ledger
    from honed.optimizers.ledger import RunLedger as OldRunLedger

    assert OldRunLedger is RunLedger and old_read_ledger is read_ledger
    ledger = RunLedger(tmp_path / "run", {"optimizer": "x"})
    try:
        record = Validate(step="seed/val", candidate="c", n=2, score=0.5, phase="seed")
        assert ledger.append(record.stamped(budget_used=2, paid_calls=2, elapsed_s=0.1))
        assert not ledger.append(record)  # a step is written once
        ledger.append({"step": "raw", "kind": "x"})  # dicts still append as they are
    finally:
        ledger.close()
    assert read_ledger(tmp_path / "run" / "ledger.jsonl") == [
        {"step": "seed/val", "kind": "validate", "candidate": "c", "n": 2, "score": 0.5, "phase": "seed",
         "budget_used": 2, "paid_calls": 2, "elapsed_s": 0.1, "schema_version": SCHEMA_VERSION},
        {"step": "raw", "kind": "x"}]


def test_a_later_search_revision_does_not_resume_a_run_of_an_earlier_one(tmp_path):
    """A run written before revisions were recorded ran revision 1: it resumes under revision 1 and gains the
    key, and is refused under a later revision, whose records must not mix with the old search's."""
    old = {"optimizer": "behavior", "budget": 10}
    for name in ("a", "b"):
        ledger = RunLedger(tmp_path / name, old)
        ledger.append({"step": "seed/val", "kind": "validate", "score": 0.5})
        ledger.close()
    with pytest.raises(RunDirError, match="revision"):
        RunLedger(tmp_path / "a", {**old, "revision": 2})
    RunLedger(tmp_path / "b", {**old, "revision": 1}).close()
    assert read_settings(tmp_path / "b")["revision"] == 1
