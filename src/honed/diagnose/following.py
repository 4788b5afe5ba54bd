"""Question 2 of Ma et al. (2024): does a refinement the optimizer accepted change what the target does?

honed's optimizers verify every refinement on the examples it targets before they admit it, and the ledger
keeps the outcome: how many targeted examples the refined candidate fixed, and how many passing examples
it broke. This reads those outcomes back, refinement by refinement:

- targeted examples (all wrong under the parent, since refinements target failures): fixed or still wrong;
- passing examples re-run as a regression check: still right or broken.

The rate at which refinements changed the target's behavior as intended is fixed / targeted, reported for
the accepted refinements (those that held) and for all verified ones. For the behavior optimizer the
per-step following rates it observed are included, with the edited step's rate under the parent and,
when the refined candidate was observed later, under it. DSPy's optimizers record no per-refinement
targets, so nothing can be measured from their ledgers: the result says so. Re-running candidates to
compare outputs example by example is not done here (it would need the task and the model).

The result is one JSON object (schema `honed.diagnose.following/1`, documented in `diagnose/__init__.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from honed.runs import Run
from honed.runs.records import Verify
from honed.runs.source import run_dir_of

SCHEMA = "honed.diagnose.following/1"
_SETTINGS_SHOWN = ("optimizer", "budget", "seed", "task_model", "optimizer_model", "dspy_optimizer")


def _refinement(run: Run, verify: Verify, lineage: set[str]) -> dict[str, Any]:
    candidate = verify.candidate
    origin = candidate.origin or ""
    targeted, fixed = verify.claimed or 0, verify.fixed or 0
    checked, broken = verify.checked_passing or 0, verify.regressions or 0
    item: dict[str, Any] = {
        "step": verify.step, "candidate": candidate.id, "parent": candidate.parent, "origin": origin,
        "accepted": verify.held is True, "in_final": candidate.id in lineage,
        "targeted": targeted, "fixed": fixed, "still_wrong": targeted - fixed, "checked_passing": checked,
        "still_right": checked - broken, "broken": broken,
        "intended_rate": round(fixed / targeted, 4) if targeted else None,
    }
    ids = (verify.targeted_ids, verify.fixed_ids, verify.broken_ids)
    if all(isinstance(v, list) for v in ids):  # ledgers from honed 0.1 hold counts only
        targeted_ids, fixed_ids, broken_ids = ids
        item["examples"] = {"fixed": fixed_ids, "broken": broken_ids,
                            "still_wrong": [i for i in targeted_ids if i not in set(fixed_ids)]}
    claim = next((c for c in run.claims if c.step == verify.claim_step), None) if verify.claim_step else None
    if claim is not None:
        item["kind"] = "claim"
        item["about"] = {"claim": claim.step, "predictor": claim.predictor, "cause": claim.cause,
                         "new_instruction": claim.new_instruction, "shown": claim.shown, "explains": claim.explains}
        return item
    item["kind"] = "step_edit" if verify.edit_step else "demonstration" if origin == "demonstration" else "edit"
    about: dict[str, Any] = {"step_id": verify.step_id}
    edit = next((e for e in run.step_edits if e.step == verify.edit_step), None) if verify.edit_step else None
    if edit is not None:
        about.update({"edit": edit.step, "action": edit.action, "new_step": edit.new_step,
                      "second_step": edit.second_step})
    if verify.step_id is not None:
        before = run.observation(verify.round_no)
        after = next((o for o in run.observations if o.candidate == candidate.id), None)
        about["following_before"] = before.following.get(verify.step_id) if before is not None else None
        about["following_after"] = after.following.get(verify.step_id) if after is not None else None
    item["about"] = about
    return item


def _totals(items: list[dict[str, Any]]) -> dict[str, Any]:
    sums = {key: sum(i[key] for i in items) for key in ("targeted", "fixed", "still_wrong", "checked_passing",
                                                          "still_right", "broken")}
    return {"refinements": len(items), **sums,
            "fixed_any": sum(i["fixed"] > 0 for i in items), "in_final": sum(i["in_final"] for i in items),
            "intended_rate": round(sums["fixed"] / sums["targeted"], 4) if sums["targeted"] else None}


def following_from_ledger(run_dir: Path) -> dict[str, Any]:
    """The diagnosis of one run directory's ledger."""
    return following_of_run(Run.open(run_dir))


def following_of_run(run: Run) -> dict[str, Any]:
    """The diagnosis of a run already read (`honed report` has it in hand)."""
    settings = run.settings
    result: dict[str, Any] = {
        "schema": SCHEMA, "diagnosis": "following", "run_dir": str(run.run_dir), "optimizer": run.optimizer,
        "settings": {k: settings[k] for k in _SETTINGS_SHOWN if k in settings},
        "finished": run.final is not None,
        "supported": True, "note": None, "refinements": [], "following": [],
    }
    if run.dspy_optimizer is not None:
        result["supported"] = False
        result["note"] = (f"DSPy's {run.dspy_optimizer} records no per-refinement targets (which examples "
                          "an edit was meant to fix), so fixed/unchanged/broken per refinement cannot be read "
                          "from its ledger; compare the seed and the result by evaluating both on the same "
                          "examples instead.")
        result["totals"] = {"accepted": _totals([]), "all": _totals([])}
        return result
    final = run.final
    lineage = set(run.lineage_ids(final.candidate.id if final is not None and final.candidate else None))
    items = [_refinement(run, verify, lineage) for verify in run.verifications]
    accepted = [i for i in items if i["accepted"]]
    result["refinements"] = items
    result["totals"] = {"accepted": _totals(accepted), "all": _totals(items)}
    result["following"] = [{"step": o.step, "candidate": o.candidate, "rates": o.following,
                            "departures": o.departures, "failures": o.failures, "n": o.n}
                           for o in run.observations]
    if final is not None and final.following is not None:
        result["final_following"] = final.following
    if not items:
        result["note"] = "no refinement was verified in this run (no reflection or edit reached verification)"
    return result


def diagnose_following(source: str | Path) -> dict[str, Any]:
    """Diagnose a run directory, its `ledger.jsonl`, or an artifact whose provenance names its run directory."""
    return following_from_ledger(run_dir_of(source))
