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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.optimizers.dspy_optimizers import DSPY_OPTIMIZERS
from honed.optimizers.ledger import LEDGER_FILE, final_record, read_ledger, read_settings

SCHEMA = "honed.diagnose.following/1"
_SETTINGS_SHOWN = ("optimizer", "budget", "seed", "task_model", "optimizer_model", "dspy_optimizer")


def _optimizer(settings: Mapping[str, Any], records: list[dict[str, Any]]) -> str | None:
    if isinstance(settings.get("optimizer"), str):
        return settings["optimizer"]
    kinds = {r.get("kind") for r in records}
    return "reflective" if "claim" in kinds else "behavior" if "step_edit" in kinds else None


def _lineage(records: list[dict[str, Any]]) -> set[str]:
    """Ids of the final candidate and its ancestors, following `parent` through every candidate the ledger holds."""
    parents: dict[str, str | None] = {}
    for record in records:
        candidate = record.get("candidate")
        if isinstance(candidate, Mapping) and isinstance(candidate.get("id"), str):
            parents.setdefault(candidate["id"], candidate.get("parent"))
    current = (final_record(records) or {}).get("candidate")
    node = current.get("id") if isinstance(current, Mapping) else None
    chain: set[str] = set()
    while isinstance(node, str) and node not in chain:
        chain.add(node)
        node = parents.get(node)
    return chain


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _refinement(verify: Mapping[str, Any], claims: Mapping[str, Mapping[str, Any]],
                edits: Mapping[str, Mapping[str, Any] | None], observed: Mapping[str, Mapping[str, Any]],
                lineage: set[str]) -> dict[str, Any]:
    candidate = verify.get("candidate") if isinstance(verify.get("candidate"), Mapping) else {"id": verify.get(
        "candidate")}
    step = str(verify.get("step"))
    owner = step.split("/verify/")[0]
    origin = str(candidate.get("origin") or "")
    targeted, fixed = _int(verify.get("claimed")), _int(verify.get("fixed"))
    checked, broken = _int(verify.get("checked_passing")), _int(verify.get("regressions"))
    item: dict[str, Any] = {
        "step": step, "candidate": candidate.get("id"), "parent": candidate.get("parent"), "origin": origin,
        "accepted": verify.get("held") is True, "in_final": candidate.get("id") in lineage,
        "targeted": targeted, "fixed": fixed, "still_wrong": targeted - fixed, "checked_passing": checked,
        "still_right": checked - broken, "broken": broken,
        "intended_rate": round(fixed / targeted, 4) if targeted else None,
    }
    ids = {key: verify.get(key) for key in ("targeted_ids", "fixed_ids", "broken_ids")}
    if all(isinstance(v, list) for v in ids.values()):  # ledgers from honed 0.1 hold counts only
        fixed_set = set(ids["fixed_ids"])
        item["examples"] = {"fixed": ids["fixed_ids"], "broken": ids["broken_ids"],
                            "still_wrong": [i for i in ids["targeted_ids"] if i not in fixed_set]}
    if owner in claims:
        claim = claims[owner]
        item["kind"] = "claim"
        item["about"] = {"claim": owner, "predictor": claim.get("predictor"), "cause": claim.get("cause"),
                         "new_instruction": claim.get("new_instruction"), "shown": claim.get("shown"),
                         "explains": claim.get("explains")}
        return item
    step_id = verify.get("step_id")
    item["kind"] = "step_edit" if origin.startswith("fix:") else "demonstration" if origin == "demonstration" \
        else "edit"
    about: dict[str, Any] = {"step_id": step_id}
    edit = edits.get(owner) if item["kind"] == "step_edit" else None
    if edit:
        about.update({"edit": edit.get("step"), "action": edit.get("action"), "new_step": edit.get("new_step"),
                      "second_step": edit.get("second_step")})
    if step_id is not None:
        before = observed.get(f"{owner}/observe", {}).get("following")
        after = next((r.get("following") for r in observed.values() if r.get("candidate") == candidate.get("id")),
                     None)
        about["following_before"] = before.get(step_id) if isinstance(before, Mapping) else None
        about["following_after"] = after.get(step_id) if isinstance(after, Mapping) else None
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
    records = [r for r in read_ledger(run_dir / LEDGER_FILE) if isinstance(r, dict)]
    return following_from_records(run_dir, records, read_settings(run_dir))


def following_from_records(run_dir: Path, records: list[dict[str, Any]], settings: Mapping[str, Any]
                           ) -> dict[str, Any]:
    """The diagnosis of a ledger already read (`honed report` has it in hand)."""
    optimizer = _optimizer(settings, records)
    result: dict[str, Any] = {
        "schema": SCHEMA, "diagnosis": "following", "run_dir": str(run_dir), "optimizer": optimizer,
        "settings": {k: settings[k] for k in _SETTINGS_SHOWN if k in settings},
        "finished": any(r.get("kind") == "final" for r in records),
        "supported": True, "note": None, "refinements": [], "following": [],
    }
    if optimizer in DSPY_OPTIMIZERS:
        result["supported"] = False
        result["note"] = (f"DSPy's {DSPY_OPTIMIZERS[optimizer]} records no per-refinement targets (which examples "
                          "an edit was meant to fix), so fixed/unchanged/broken per refinement cannot be read "
                          "from its ledger; compare the seed and the result by evaluating both on the same "
                          "examples instead.")
        result["totals"] = {"accepted": _totals([]), "all": _totals([])}
        return result
    claims = {str(r.get("step")): r for r in records if r.get("kind") == "claim"}
    observed = {str(r.get("step")): r for r in records if r.get("kind") == "observe"}
    lineage = _lineage(records)
    edits: dict[str, Mapping[str, Any] | None] = {}
    items = []
    for record in records:
        kind, step = record.get("kind"), str(record.get("step"))
        if kind == "step_edit":
            edits[step.split("/")[0]] = record
        elif kind == "error" and "/fix" in step:
            edits[step.split("/")[0]] = None  # a failed fix: the verifications that follow are demonstrations
        elif kind == "verify":
            items.append(_refinement(record, claims, edits, observed, lineage))
    accepted = [i for i in items if i["accepted"]]
    result["refinements"] = items
    result["totals"] = {"accepted": _totals(accepted), "all": _totals(items)}
    result["following"] = [{"step": r.get("step"), "candidate": r.get("candidate"), "rates": r.get("following"),
                            "departures": r.get("departures"), "failures": r.get("failures"), "n": r.get("n")}
                           for r in observed.values() if isinstance(r.get("following"), Mapping)]
    final = final_record(records)
    if final is not None and isinstance(final.get("following"), Mapping):
        result["final_following"] = final["following"]
    if not items:
        result["note"] = "no refinement was verified in this run (no reflection or edit reached verification)"
    return result


def diagnose_following(source: str | Path) -> dict[str, Any]:
    """Diagnose a run directory, its `ledger.jsonl`, or an artifact whose provenance names its run directory."""
    from honed.report import run_dir_of

    return following_from_ledger(run_dir_of(source))
