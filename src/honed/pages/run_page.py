"""The page of one run directory: settings, cost, validation score against model calls, seed against final
program, each optimizer's section, what its refinements changed, per-step following rates, stop reason.

Every value shown comes from the ledger as written (a score of 0.625 in `ledger.jsonl` reads 0.625 on the
page), and all ledger text, much of it written by a model, is HTML-escaped. The run is read as typed
records (`honed.runs.Run`): each optimizer's records have their section (claims for ReflectiveRefine;
procedure, demonstrations, departures and step edits for BehaviorOptimizer; DSPy's optimizer call), and
only records this honed cannot type are listed as written, so ledgers of newer optimizers still render.
Any record carrying a `following` dict (step id -> fraction of runs that followed the step) adds a row to
the per-step following-rate table.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.diagnose.following import following_of_run
from honed.errors import ConfigError, HonedError
from honed.pages.artifact_page import artifact_body
from honed.pages.behavior import behavior_section, edit_counts, procedure_list
from honed.pages.diagnosis_page import changed_as_intended_section
from honed.pages.html import (
    badge,
    demo_ids,
    esc,
    facts_row,
    is_number,
    kv_table,
    page,
    plain_text,
    pre,
    short,
    table,
)
from honed.pages.plots import score_plot
from honed.runs import SETTINGS_FILE, Run
from honed.runs.records import CandidateJson, Claim, Minibatch, Record, UnknownRecord, Validate, Verify

# Keys every record has: the "other records" table shows the rest.
_COMMON_KEYS = ("step", "kind", "budget_used", "paid_calls", "elapsed_s", "schema_version")


def run_page(run_dir: Path, artifact: tuple[Path, Mapping[str, Any]] | None = None) -> str:
    """The HTML page of `run_dir`; `artifact` (its path and JSON) adds the artifact saved from the run."""
    return RunPage(run_dir, artifact).render()


class RunPage:
    """The page of one run directory, section by section, each reading the typed `Run`."""

    def __init__(self, run_dir: Path, artifact: tuple[Path, Mapping[str, Any]] | None) -> None:
        self.run_dir = run_dir
        self.artifact = artifact
        try:
            self.run = Run.open(run_dir)
        except (HonedError, OSError) as exc:
            raise ConfigError(f"{run_dir}: cannot read its ledger: {exc}") from exc
        self.settings = self.run.settings
        self.final = self.run.final

    # -- page ----------------------------------------------------------------------------------------
    def render(self) -> str:
        s = self.settings
        title = f"honed report: {s.get('optimizer', 'compile')} on {s.get('task') or s.get('task_model') or '?'}"
        parts = [self.header(), self.cost(), self.progress(), self.predictors(), self.optimizer_section(),
                 self.changed_as_intended(), self.following(), self.other_records(), self.stop_reason()]
        if self.artifact is not None:
            path, data = self.artifact
            parts.append("<section id=\"artifact\"><h2>Artifact</h2>"
                         f"<p class=\"muted\">Saved program <code>{esc(str(path))}</code>; its provenance names "
                         f"this run directory.</p>{artifact_body(data)}</section>")
        return page(title, "\n".join(p for p in parts if p))

    def optimizer_section(self) -> str:
        """The section of each optimizer whose records the run holds (of the one that wrote it, even before
        it wrote any: an empty section says what is missing)."""
        run, family = self.run, self.run.family
        behavior = run.procedure or run.demonstrations or run.observations or run.step_edits or run.errors
        parts = [self.reflections() if run.claims or family == "reflective" else "",
                 behavior_section(run) if behavior or family == "behavior" else "",
                 self.dspy_call() if run.dspy_call or family == "dspy" else ""]
        return "".join(parts)

    def header(self) -> str:
        s = self.settings
        facts = [("task", s.get("task")), ("optimizer", s.get("optimizer")), ("seed", s.get("seed")),
                 ("budget", s.get("budget")), ("task model", s.get("task_model")),
                 ("optimizer model", s.get("optimizer_model"))]
        shown = facts_row((k, v) for k, v in facts if v is not None or k in ("task", "optimizer", "seed", "budget"))
        settings = (f"<details><summary>All settings ({len(s)})</summary>{kv_table(s)}</details>" if s
                    else f"<p class=\"muted\">No {SETTINGS_FILE} in the run directory.</p>")
        status = ("finished" if self.final else "not finished (no <code>final</code> record: running, "
                  "interrupted, or failed)")
        return (f"<header><h1>honed compile report</h1><div class=\"sub\">Run directory "
                f"<code>{esc(str(self.run_dir))}</code> · {len(self.run.records)} ledger records · {status}</div>"
                f"{shown}{settings}</header>")

    # -- cost ----------------------------------------------------------------------------------------
    def sessions(self) -> list[dict[str, Any]]:
        """Per-process segments of the ledger: `paid_calls` and `elapsed_s` restart when a compile resumes."""
        sessions: list[dict[str, Any]] = []
        previous: Record | None = None
        for record in self.run.records:
            paid, elapsed = record.paid_calls, record.elapsed_s
            restarted = previous is not None and (
                (is_number(paid) and is_number(previous.paid_calls) and paid < previous.paid_calls)
                or (is_number(elapsed) and is_number(previous.elapsed_s) and elapsed < previous.elapsed_s))
            if not sessions or restarted:
                sessions.append({"paid_calls": None, "elapsed_s": None})
            if is_number(paid):
                sessions[-1]["paid_calls"] = paid
            if is_number(elapsed):
                sessions[-1]["elapsed_s"] = elapsed
            previous = record
        return sessions

    def claim_counts(self) -> tuple[Any, Any]:
        if self.final is not None and (self.final.claims is not None or self.final.claims_held is not None):
            return self.final.claims, self.final.claims_held
        made = [c for c in self.run.claims if not c.failed]
        held = sum(any(v.held is True for v in self.run.verifications_of_claim(c)) for c in made)
        return len(made), held

    def proposal_cards(self) -> list[tuple[str, str, str]]:
        """(label, value, note) of the cards about the optimizer's proposals and their verification rate:
        claims for ReflectiveRefine, step edits and demonstrations for BehaviorOptimizer."""
        family = self.run.family
        if family == "reflective" or (family is None and self.run.claims):
            made, held = self.claim_counts()
            failed = sum(c.failed for c in self.run.claims)
            what = "claims"
            cards = [("claims made", esc(made), f"{failed} reflection(s) failed to parse" if failed
                      else "reflections that proposed a fix"),
                     ("claims held", esc(held), "fixed what they claimed in verification")]
        elif family == "behavior":
            made, held = edit_counts(self.run)
            demos = self.run.demonstrations
            kept = sum(d.accepted is True for d in demos)
            what = "step edits"
            cards = [("step edits made", esc(made), "repairs of the step where the target departed"),
                     ("step edits held", esc(held), "fixed what they targeted in verification"),
                     ("demonstrations", esc(kept), f"kept of {len(demos)} worked examples")]
        else:
            return []
        if is_number(made) and is_number(held) and made:
            cards.append(("verification rate", f"{100 * held / made:.1f}%", f"{esc(held)} of {esc(made)} {what} held"))
        else:
            cards.append(("verification rate", esc(None), f"no {what} made"))
        return cards

    def cost(self) -> str:
        used = [r.budget_used for r in self.run.records if is_number(r.budget_used)]
        budget = self.settings.get("budget")
        used_max = max(used) if used else None
        sessions = self.sessions()
        paid = [s["paid_calls"] for s in sessions if s["paid_calls"] is not None]
        elapsed = [s["elapsed_s"] for s in sessions if s["elapsed_s"] is not None]

        def card(label: str, value: str, note: str = "") -> str:
            extra = f"<div class=\"note\">{note}</div>" if note else ""
            return (f"<div class=\"card\"><div class=\"label\">{html.escape(label)}</div>"
                    f"<div class=\"value\">{value}</div>{extra}</div>")

        used_note = ""
        if is_number(used_max) and is_number(budget) and budget:
            used_note = f"{100 * used_max / budget:.1f}% of the budget"
        if len(sessions) > 1:
            paid_value = esc(sum(paid)) if paid else esc(None)
            paid_note = f"{len(sessions)} sessions: " + " + ".join(esc(p) for p in paid)
            elapsed_value = (esc(round(sum(elapsed), 2)) + " s") if elapsed else esc(None)
            elapsed_note = f"{len(sessions)} sessions: " + " + ".join(esc(e) + " s" for e in elapsed)
        else:
            paid_value = esc(paid[0] if paid else None)
            paid_note = "provider calls (cache misses)"
            elapsed_value = (esc(elapsed[0]) + " s") if elapsed else esc(None)
            elapsed_note = "wall clock"
        cards = [
            card("budget", esc(budget), "distinct model requests allowed"),
            card("requests used", esc(used_max), used_note or "distinct model requests"),
            card("paid calls", paid_value, paid_note),
            card("elapsed", elapsed_value, elapsed_note),
            *[card(label, value, note) for label, value, note in self.proposal_cards()],
        ]
        if self.final:
            cards.append(card("validation score", f"{esc(self.final.baseline_val_score)} → "
                              f"{esc(self.final.val_score)}", "seed → final"))
            gain = self.final.gain_over_seed
            if isinstance(gain, dict):
                verdict = "returned" if gain.get("holds") else "seed kept: the gain may be chance"
                pairs = (f"validation and {esc(gain['held_out'])} held-out training examples"
                         if gain.get("held_out") else "validation")
                cards.append(card("best candidate vs seed", f"+{esc(gain.get('wins'))} / −{esc(gain.get('losses'))}",
                                  f"on {pairs}; validation {esc(gain.get('val_score'))}, sign test p="
                                  f"{esc(gain.get('p_value'))} (needs ≤ {esc(gain.get('significance'))}); {verdict}"))
        return (f"<section id=\"cost\"><h2>Cost</h2><div class=\"cards\">{''.join(cards)}</div>"
                f"{self.spending()}</section>")

    def spending(self) -> str:
        """Where the requests went, per activity (`honed.runs.spending`); empty when no record counted any.
        The shares are of the requests used (the counts sum to the highest `budget_used`)."""
        spent = self.run.spending
        if not spent:
            return ""
        total = sum(spent.values())
        rows = [(esc(name), esc(calls), f"{100 * calls / total:.0f}%") for name, calls in spent.items()]
        return "<h3>Where the requests went</h3>" + table(("activity", "requests", "share"), rows)

    # -- progress --------------------------------------------------------------------------------------
    def full_n(self) -> Any:
        seed_val = next((v for v in self.run.validations if v.phase == "seed"), None)
        if seed_val is not None:
            return seed_val.n
        ns = [v.n for v in self.run.validations]
        return max(ns) if ns else None

    def final_id(self) -> str | None:
        return self.final.candidate.id if self.final is not None and self.final.candidate is not None else None

    def progress(self) -> str:
        validations = self.run.validations
        if not validations:
            return ("<section id=\"progress\"><h2>Validation score vs model calls</h2>"
                    "<p class=\"muted\">The ledger has no validation records yet.</p></section>")
        used = [r.budget_used for r in self.run.records if is_number(r.budget_used)]
        full_n = self.full_n()
        plot = score_plot(validations, self.run.seed_id, full_n, self.settings.get("budget"),
                          max(used) if used else None)
        image = (f"<img class=\"plot\" alt=\"validation score vs model calls\" src=\"data:image/png;base64,{plot}\">"
                 if plot else "<p class=\"muted\">The plot needs matplotlib (<code>pip install matplotlib</code>);"
                 " the table below has every value.</p>")
        rows = []
        for v in validations:
            tags = [tag for tag, applies in (("seed", v.candidate == self.run.seed_id),
                                             ("final", v.candidate == self.final_id()),
                                             ("partial", is_number(full_n) and v.n < full_n)) if applies]
            known = self.run.candidates.get(v.candidate)
            rows.append((f"<code>{esc(v.step)}</code>", short(v.candidate), esc(known.origin if known else None),
                         esc(", ".join(tags)), esc(v.n), f"<b>{esc(v.score)}</b>", esc(v.budget_used)))
        listed = table(("step", "candidate", "origin", "", "n", "score", "requests used"), rows)
        minibatches = self.run.of(Minibatch)
        mb = ""
        if minibatches:
            mb_rows = [(f"<code>{esc(r.step)}</code>", short(r.candidate), esc(r.n), esc(r.failures), esc(r.score),
                        esc(r.budget_used)) for r in minibatches]
            mb = ("<details><summary>Training minibatches (" + str(len(minibatches)) + ")</summary>"
                  + table(("step", "candidate", "n", "failures", "score", "requests used"), mb_rows)
                  + "</details>")
        return (f"<section id=\"progress\"><h2>Validation score vs model calls</h2>{image}"
                f"<h3>Validation evaluations</h3>{listed}{mb}{self.held_out()}</section>")

    def held_out(self) -> str:
        """The confirmation on training examples held out of the search (behavior), apart from validation."""
        records = self.run.held_out
        if not records:
            return ""
        rows = [(f"<code>{esc(r.step)}</code>", short(r.candidate),
                 esc(known.origin if (known := self.run.candidates.get(r.candidate)) else None),
                 esc(r.n), f"<b>{esc(r.score)}</b>", esc(r.budget_used)) for r in records]
        return ("<h3>Confirmation on held-out training examples</h3><p class=\"muted\">Run for the seed and the best"
                " candidate before the seed is replaced; no candidate was built from these examples.</p>"
                + table(("step", "candidate", "origin", "n", "score", "requests used"), rows))

    # -- predictors --------------------------------------------------------------------------------------
    def best_known(self) -> tuple[CandidateJson | None, str]:
        if self.final is not None and self.final.candidate is not None:
            return self.final.candidate, "final"
        full_n = self.full_n()
        best = None
        for v in self.run.validations:
            if v.n == full_n and is_number(v.score) and (best is None or v.score > best.score):
                best = v
        if best is not None and best.candidate in self.run.candidates:
            return self.run.candidates[best.candidate], "best so far (no final record)"
        return None, "final"

    def lineage(self, candidate: CandidateJson) -> str:
        steps = [f"{short(c.id)} <span class=\"muted\">({esc(c.origin)})</span>"
                 for c in reversed(self.run.lineage(candidate))]
        return " → ".join(steps)

    def predictors(self) -> str:
        final, label = self.best_known()
        seed = self.run.seed
        seed_preds = seed.predictors if seed is not None else {}
        final_preds = final.predictors if final is not None else {}
        if not seed_preds and not final_preds:
            return ""
        names = list(dict.fromkeys([*seed_preds, *final_preds]))
        blocks = []
        for name in names:
            seed_state = seed_preds.get(name) or {}
            final_state = final_preds.get(name) or {}
            changed = final is not None and seed_state != final_state

            def column(title: str, state: Mapping[str, Any], present: bool, cls: str = "") -> str:
                if not present:
                    return f"<div class=\"col\"><h4>{html.escape(title)}</h4><p class=\"muted\">—</p></div>"
                behavior = ""
                if isinstance(state.get("procedure"), Mapping):
                    worked = state.get("worked_demos") or []
                    behavior = (f"<div>procedure:</div>{procedure_list(state['procedure'])}"
                                f"<div>{esc(len(worked))} worked demonstration(s)</div>")
                return (f"<div class=\"col {cls}\"><h4>{html.escape(title)}</h4>{pre(state.get('instructions', ''))}"
                        f"<div>{demo_ids(state.get('demo_ids'))}</div>{behavior}</div>")

            mark = ' <span class="badge ok">changed</span>' if changed else ' <span class="badge">unchanged</span>'
            blocks.append(f"<h3><code>{esc(name)}</code>{mark if final else ''}</h3><div class=\"side\">"
                          + column("seed", seed_state, bool(seed_state))
                          + column(label, final_state, final is not None and bool(final_state),
                                   "changed" if changed else "")
                          + "</div>")
        lineage = f"<p>Lineage of the {html.escape(label)} candidate: {self.lineage(final)}</p>" if final else ""
        return f"<section id=\"predictors\"><h2>Seed vs final program</h2>{lineage}{''.join(blocks)}</section>"

    # -- reflections ---------------------------------------------------------------------------------
    def reflections(self) -> str:
        claims = self.run.claims
        if not claims:
            return ("<section id=\"claims\"><h2>Reflections</h2><p class=\"muted\">No reflection (claim) records."
                    "</p></section>")
        val_scores: dict[str, list[Validate]] = {}
        for v in self.run.validations:
            val_scores.setdefault(v.candidate, []).append(v)
        rows = [self.claim_row(claim, val_scores) for claim in claims]
        made, held = self.claim_counts()
        return ("<section id=\"claims\"><h2>Reflections</h2>"
                f"<p>{esc(made)} claim(s) made, {esc(held)} held. A claim holds when one of its candidates fixes "
                "at least one cited failure and more failures than it breaks among passing examples.</p>"
                + table(("step", "predictor", "shown examples", "cause", "proposed instruction", "verification",
                         "claim"), rows) + "</section>")

    def claim_row(self, claim: Claim, val_scores: Mapping[str, list[Validate]]) -> tuple[str, ...]:
        verdicts = self.run.verifications_of_claim(claim)
        if claim.failed:
            what = (f"<span class=\"badge bad\">reflection failed</span> {esc(claim.error)}"
                    + (f"<details><summary>model response</summary>{pre(plain_text(claim.response))}"
                       "</details>" if claim.response is not None else ""))
            proposal = esc(None)
        else:
            what = esc(claim.cause)
            proposal = pre(plain_text(claim.new_instruction))
            if claim.show_examples:
                proposal += "<div class=\"muted\">+ asks to show the cited examples as demos</div>"
        shown = claim.shown
        shown_html = ", ".join(f"<code>{esc(i)}</code>" for i in shown) if isinstance(shown, list) else esc(shown)
        if verdicts:
            v_rows = []
            for v in verdicts:
                scores = val_scores.get(v.candidate.id, [])
                score_text = ", ".join(f"{esc(s.score)} (n={esc(s.n)})" for s in scores)
                v_rows.append((short(v.candidate.id), esc(v.candidate.origin), f"{esc(v.fixed)}/{esc(v.claimed)}",
                               f"{esc(v.regressions)}/{esc(v.checked_passing)}", badge(v.held),
                               score_text or "<span class=\"muted\">not ranked</span>"))
            verdict_html = table(("candidate", "edit", "fixed/claimed", "regressions/checked", "verdict",
                                  "validation"), v_rows, "verdicts")
            claim_badge = badge(any(v.held is True for v in verdicts))
        else:
            verdict_html = "<span class=\"muted\">no candidate verified</span>"
            claim_badge = badge(None)
        return (f"<code>{esc(claim.step)}</code>", f"<code>{esc(claim.predictor)}</code>",
                shown_html + (f"<div class=\"muted\">explains: {esc(claim.explains)}</div>"
                              if claim.explains is not None else ""),
                what, proposal, verdict_html, claim_badge)

    # -- DSPy's optimizers --------------------------------------------------------------------------------
    def dspy_call(self) -> str:
        call = self.run.dspy_call
        if call is None:
            return ("<section id=\"dspy\"><h2>DSPy's optimizer</h2><p class=\"muted\">No optimizer record: DSPy's "
                    "compile has not finished.</p></section>")
        facts = {"DSPy optimizer": call.dspy_optimizer, "status": call.status, "stop reason": call.stop_reason,
                 "returned a program": call.returned_program, "requests it made": call.optimizer_requests,
                 "seconds": call.wall_s, "candidate": call.candidate.id if call.candidate else None}
        if self.final is not None:
            facts.update({"its validation score": self.final.optimizer_val_score,
                          "fell back to the seed": self.final.fell_back_to_seed, "note": self.final.note})
        return ("<section id=\"dspy\"><h2>DSPy's optimizer</h2>" + kv_table(facts)
                + "<h3>Hyperparameters</h3>" + kv_table(call.hyperparameters or {}) + "</section>")

    # -- question 2 of the diagnostics ------------------------------------------------------------------
    def changed_as_intended(self) -> str:
        """`honed diagnose following`'s totals, for runs whose ledger records verifications."""
        if not self.run.verifications:
            return ""
        return changed_as_intended_section(following_of_run(self.run))

    # -- following rates ----------------------------------------------------------------------------------
    def following(self) -> str:
        records = [r for r in self.run.records if isinstance(getattr(r, "following", None), dict)]
        if not records:
            return ""
        steps = list(dict.fromkeys(k for r in records for k in r.following))
        rows = []
        for r in records:
            cand = getattr(r, "candidate", None)
            cid = cand.id if isinstance(cand, CandidateJson) else cand.get("id") if isinstance(cand, dict) else cand
            cells = [f"<code>{esc(r.step)}</code>", esc(r.kind), short(cid) if cid else esc(None)]
            for step in steps:
                value = r.following.get(step)
                style = ""
                if is_number(value) and 0 <= value <= 1:
                    style = f" style=\"background: hsla({round(120 * value)}, 60%, 75%, 0.55)\""
                cells.append(f"<span{style}>{esc(value)}</span>")
            rows.append(cells)
        return ("<section id=\"following\"><h2>Per-step following rates</h2><p class=\"muted\">Fraction of runs "
                "in which the model followed each procedure step.</p>"
                + table(("ledger step", "kind", "candidate", *[str(s) for s in steps]), rows) + "</section>")

    # -- records no section shows ----------------------------------------------------------------------------
    def other_records(self) -> str:
        """Records of kinds this honed cannot type, and verifications no claim or refinement round claims."""
        shown = {id(v) for c in self.run.claims for v in self.run.verifications_of_claim(c)}
        if self.run.family == "behavior":
            shown |= {id(v) for v in self.run.verifications if v.round_no is not None}
        others = [r for r in self.run.records
                  if isinstance(r, UnknownRecord) or (isinstance(r, Verify) and id(r) not in shown)]
        if not others:
            return ""
        rows = []
        for r in others:
            rest = {k: v for k, v in r.to_json().items() if k not in _COMMON_KEYS}
            rows.append((f"<code>{esc(r.step)}</code>", esc(r.kind), esc(r.budget_used),
                         pre(rest) if rest else esc(None)))
        kinds = sorted({str(r.kind) for r in others})
        return ("<section id=\"other\"><h2>Other ledger records</h2>"
                f"<p class=\"muted\">Kinds shown as written: {esc(', '.join(kinds))}.</p>"
                + table(("step", "kind", "requests used", "record"), rows) + "</section>")

    def stop_reason(self) -> str:
        if self.final is None:
            body = "<p class=\"muted\">No <code>final</code> record: the compile has not finished.</p>"
        else:
            body = pre(plain_text(self.final.stop_reason))
        return f"<section id=\"stop\"><h2>Stop reason</h2>{body}</section>"
