"""The behavior optimizer's section of a run report: what it told the target to do and what came of it.

In the order the optimizer works: the procedure it drafted, the demonstrations (taught by the optimizer
model, or by a reference execution that knew the answer), then per refinement round where the target
departed from the steps, each step edit proposed for the departing step with its verdict on the
examples it was meant to fix, the demonstrations added as candidates, and the calls that failed. The
per-step following rates are the report's own section (any record may carry them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from honed.pages.html import badge, esc, pre, short, table
from honed.runs import Run
from honed.runs.records import CandidateJson, ReferenceDemonstration, StepEdit, Verify


def behavior_section(run: Run) -> str:
    """The section's HTML (every value escaped)."""
    parts = [_procedure(run), _demonstrations(run), *[_round(run, n) for n in _round_numbers(run)],
             _unplaced_edits(run), _errors(run)]
    return "<section id=\"behavior\"><h2>Behavior</h2>" + "".join(p for p in parts if p) + "</section>"


def edit_counts(run: Run) -> tuple[int | None, int | None]:
    """(step edits proposed, edits whose candidate held in verification): the final record's counts, or
    while the compile is unfinished, counted from the records."""
    final = run.final
    if final is not None and final.edits is not None:
        return final.edits, final.edits_held
    edits = run.step_edits
    return len(edits), sum(any(v.held is True for v in run.verifications_of_edit(e)) for e in edits)


def _steps(procedure: Mapping[str, Any] | None) -> list[tuple[str | None, str, str]]:
    """(id, instruction, produces) of each step of a procedure as JSON; a step written as a plain string
    (a hand-made ledger) is its own instruction."""
    steps = (procedure or {}).get("steps")
    found: list[tuple[str | None, str, str]] = []
    for step in steps if isinstance(steps, list) else []:
        if isinstance(step, Mapping):
            found.append((step.get("id"), str(step.get("instruction", "")), str(step.get("produces") or "")))
        else:
            found.append((None, str(step), ""))
    return found


def procedure_list(procedure: Mapping[str, Any] | None) -> str:
    items = []
    for step_id, instruction, produces in _steps(procedure):
        label = f"<code>{esc(step_id)}</code>" if step_id else ""
        extra = f" <span class=\"muted\">(produce: {esc(produces)})</span>" if produces else ""
        items.append(f"<li>{label}{esc(instruction)}{extra}</li>")
    return f"<ol class=\"procedure\">{''.join(items)}</ol>" if items else "<p class=\"muted\">No steps.</p>"


def _procedure_of(candidate: CandidateJson | None) -> Mapping[str, Any] | None:
    """The procedure a candidate's predictor follows (a behavior program has one predictor with one)."""
    for state in (candidate.predictors if candidate else {}).values():
        if isinstance(state.get("procedure"), Mapping):
            return state["procedure"]
    return None


def _procedure(run: Run) -> str:
    draft = run.procedure
    if draft is None:
        return "<h3>Procedure</h3><p class=\"muted\">No procedure record: the compile stopped before drafting.</p>"
    how = {"drafted": "Step 0, drafted by the optimizer model from the task and a few solved examples:",
           "template": "Step 0, the two-step template (the optimizer model's draft had fewer than two steps):"}
    html = (f"<h3>Procedure</h3><p>{esc(how.get(draft.origin or '', 'Step 0:'))}</p>"
            f"{procedure_list(draft.procedure)}")
    final = run.final
    returned = _procedure_of(final.candidate) if final is not None else None
    if final is not None and returned is None:
        html += "<p>The returned program follows no procedure (the seed was kept).</p>"
    elif returned is not None and _steps(returned) != _steps(draft.procedure):
        html += f"<p>The returned program follows the procedure as edited:</p>{procedure_list(returned)}"
    elif returned is not None:
        html += "<p class=\"muted\">The returned program follows the drafted procedure unchanged.</p>"
    return html


def _demonstrations(run: Run) -> str:
    demos = run.demonstrations
    if not demos:
        off = run.settings.get("demonstrations") is False
        return ("<h3>Demonstrations</h3><p class=\"muted\">"
                + ("None: demonstrations were turned off (the ablation)." if off else "No demonstration records.")
                + "</p>")
    rows = []
    for demo in demos:
        by_reference = isinstance(demo, ReferenceDemonstration)
        steps = "".join(f"<li>{esc(s)}</li>" for s in demo.steps or [])
        rows.append((f"<code>{esc(demo.step)}</code>", f"<code>{esc(demo.example)}</code>",
                     "reference execution" if by_reference else "taught",
                     badge(demo.accepted, "kept", "rejected"),
                     (f"<ol class=\"procedure\">{steps}</ol>" if steps else esc(None))
                     + (f"<div class=\"muted\">{esc(getattr(demo, 'error', None))}</div>"
                        if getattr(demo, "error", None) else "")))
    taught = [d for d in demos if not isinstance(d, ReferenceDemonstration)]
    referenced = [d for d in demos if isinstance(d, ReferenceDemonstration)]
    summary = (f"{len(taught)} taught by the optimizer model following the procedure "
               f"({sum(d.accepted is True for d in taught)} with the right answer, kept); "
               f"{len(referenced)} by reference execution, told the correct answer "
               f"({sum(d.accepted is True for d in referenced)} kept).")
    return (f"<h3>Demonstrations</h3><p>{esc(summary)}</p>"
            + table(("step", "example", "how", "", "steps produced"), rows))


def _round_numbers(run: Run) -> list[int]:
    found = [r.round_no for r in (*run.observations, *run.step_edits, *run.verifications) if r.round_no is not None]
    return sorted(set(found))


def _validation(run: Run, candidate_id: str) -> str:
    scores = [v for v in run.validations if v.candidate == candidate_id]
    text = ", ".join(f"{esc(v.score)} (n={esc(v.n)})" for v in scores)
    return text or "<span class=\"muted\">not ranked</span>"


def _counts(verify: Verify) -> tuple[str, str]:
    return (f"{esc(verify.fixed)}/{esc(verify.claimed)}", f"{esc(verify.regressions)}/{esc(verify.checked_passing)}")


_EDIT_COLUMNS = ("edit", "step", "action", "proposed step", "fixed/targeted", "broken/checked", "verdict",
                 "validation")


def _edit_row(run: Run, edit: StepEdit) -> tuple[str, ...]:
    proposal = esc(edit.new_step) + (f"<div>then: {esc(edit.second_step)}</div>" if edit.second_step else "")
    verdicts = run.verifications_of_edit(edit)
    if verdicts:
        verify = verdicts[-1]
        fixed, broken = _counts(verify)
        return (f"<code>{esc(edit.step)}</code>", f"<code>{esc(edit.step_id)}</code>", esc(edit.action), proposal,
                fixed, broken, badge(verify.held), _validation(run, verify.candidate.id))
    reason = "changes nothing" if edit.procedure is None else "not verified (seen before, or no budget left)"
    return (f"<code>{esc(edit.step)}</code>", f"<code>{esc(edit.step_id)}</code>", esc(edit.action), proposal,
            esc(None), esc(None), f"<span class=\"muted\">{esc(reason)}</span>", esc(None))


def _round(run: Run, round_no: int) -> str:
    parts = [f"<h3>Refinement round {esc(round_no)}</h3>"]
    observe = run.observation(round_no)
    if observe is not None:
        drafted = run.procedure.procedure if run.procedure else None
        named = {i: text for i, text, _ in _steps(_procedure_of(run.candidates.get(observe.candidate)) or drafted)}
        parts.append(f"<p>The target ran candidate {short(observe.candidate)} on {esc(observe.n)} training "
                     f"examples: {esc(observe.failures)} failed.</p>")
        if observe.departures:
            rows = [(f"<code>{esc(step_id)}</code>", esc(named.get(step_id)), esc(count))
                    for step_id, count in observe.departures.items()]
            parts.append("<p>Where each failing run first departed from the reference execution:</p>"
                         + table(("step", "instruction", "failing runs"), rows))
    edits = [e for e in run.step_edits if e.round_no == round_no]
    if edits:
        parts.append("<h4>Step edits</h4>" + table(_EDIT_COLUMNS, [_edit_row(run, e) for e in edits], "verdicts"))
    added = [v for v in run.verifications if v.round_no == round_no and v.edit_step is None]
    if added:
        rows = [(short(v.candidate.id), esc(v.candidate.origin), *_counts(v), badge(v.held),
                 _validation(run, v.candidate.id)) for v in added]
        parts.append("<h4>Demonstrations of the failing case, verified as candidates</h4>" + table(
            ("candidate", "origin", "fixed/targeted", "broken/checked", "verdict", "validation"), rows, "verdicts"))
    if observe is not None and not observe.departures:
        parts.append("<p class=\"muted\">No run failed, so nothing was edited.</p>")
    return "".join(parts)


def _unplaced_edits(run: Run) -> str:
    """Step edits that name no refinement round (hand-made or damaged ledgers), so that none goes unshown."""
    edits = [e for e in run.step_edits if e.round_no is None]
    if not edits:
        return ""
    return "<h3>Other step edits</h3>" + table(_EDIT_COLUMNS, [_edit_row(run, e) for e in edits], "verdicts")


def _errors(run: Run) -> str:
    if not run.errors:
        return ""
    rows = [(f"<code>{esc(e.step)}</code>", pre(e.error or "")) for e in run.errors]
    return ("<h3>Optimizer-model calls that failed</h3><p class=\"muted\">Counted and skipped; the compile went "
            "on.</p>" + table(("step", "error"), rows))
