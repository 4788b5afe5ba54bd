"""A compile's run directory (or a compiled artifact) as one self-contained HTML page.

    from honed.report import build_report, write_report
    write_report("runs/sentiment", "sentiment.html")

The page has no external assets: the CSS is inline and the plot is an embedded base64 PNG, so it can be
mailed, archived or opened offline. Every value shown comes from the ledger as written (a score of
0.625 in `ledger.jsonl` reads 0.625 on the page), and all ledger text — much of it written by a model —
is HTML-escaped. Record kinds the report does not know are listed as they are, so ledgers written by
newer optimizers still render; any record carrying a `following` dict (step id -> fraction of runs
that followed the step) adds a per-step following-rate table.

The pages of `honed diagnose` results are in `honed.diagnose.html`, built with the helpers here.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from honed.errors import ConfigError, HonedError
from honed.optimizers.ledger import LEDGER_FILE, SETTINGS_FILE, final_record, read_ledger, read_settings

__all__ = ["build_report", "run_dir_of", "write_report"]

KNOWN_KINDS = ("validate", "candidate", "minibatch", "claim", "verify", "final")
_COMMON_KEYS = ("step", "kind", "budget_used", "paid_calls", "elapsed_s")
_PLOT_POINT_LABELS = 24  # label points with their candidate id up to this many validation points


# ---------------------------------------------------------------------------------------------- public API


def build_report(source: str | Path) -> str:
    """The HTML report for `source`: a run directory (or its `ledger.jsonl`), or a compiled artifact JSON.

    An artifact whose `provenance.run_dir` names an existing run directory reports on that run (and shows
    the artifact too); otherwise the artifact is rendered alone. Raises `ConfigError` naming `source` when it
    is neither a run directory with a ledger nor a readable artifact.
    """
    kind, path, payload = _resolve_source(Path(source))
    if kind == "run":
        return _RunReport(path, artifact=None).render()
    artifact_path, artifact = path, payload
    run_dir = _artifact_run_dir(artifact_path, artifact)
    if run_dir is not None:
        return _RunReport(run_dir, artifact=(artifact_path, artifact)).render()
    return _artifact_page(artifact_path, artifact)


def write_report(source: str | Path, out_path: str | Path | None = None) -> Path:
    """Write `build_report(source)` to `out_path` and return the path written.

    `out_path` may be a file or an existing directory (the page is then `report.html` inside it); left out, the
    page goes to `<run dir>/report.html`, or next to an artifact as `<artifact>.html`.
    """
    page = build_report(source)
    if out_path is None:
        kind, path, _ = _resolve_source(Path(source))
        target = path / "report.html" if kind == "run" else path.with_suffix(".html")
    else:
        target = Path(out_path)
        if target.is_dir():
            target = target / "report.html"
    return write_page(page, target, "the report")


def write_page(page: str, target: Path, what: str) -> Path:
    """Write an HTML page, creating its folder; an unwritable target is a ConfigError naming `what`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {what} to {target}: {exc}") from exc
    return target


def run_dir_of(source: str | Path) -> Path:
    """The run directory `source` names: itself, the folder of a `ledger.jsonl`, or an artifact's provenance run."""
    kind, path, payload = _resolve_source(Path(source))
    if kind == "run":
        return path
    run_dir = _artifact_run_dir(path, payload)
    if run_dir is None:
        raise ConfigError(f"{path}: the artifact's provenance names no run directory that exists here; "
                          "pass the run directory itself")
    return run_dir


# ---------------------------------------------------------------------------------------------- sources


def _resolve_source(path: Path) -> tuple[str, Path, Any]:
    """('run', run_dir, None) or ('artifact', file, parsed JSON); ConfigError naming `path` otherwise."""
    if not path.exists():
        raise ConfigError(f"{path}: no such run directory or artifact file")
    if path.is_dir():
        if (path / LEDGER_FILE).is_file():
            return "run", path, None
        raise ConfigError(f"{path} is not a run directory (it has no {LEDGER_FILE}) and not an artifact file")
    if path.name == LEDGER_FILE:
        return "run", path.parent, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path} is neither a run directory nor a readable artifact JSON ({reason})") from None
    if not isinstance(data, dict) or "schema_version" not in data or not isinstance(data.get("predictors"), dict):
        raise ConfigError(f"{path} is JSON but not a honed artifact (it needs `schema_version` and `predictors`); "
                          "pass a run directory or a file written by honed's artifact save")
    return "artifact", path, data


def _artifact_run_dir(artifact_path: Path, artifact: Mapping[str, Any]) -> Path | None:
    """The run directory named in the artifact's provenance, when it exists and holds a ledger."""
    provenance = artifact.get("provenance")
    named = provenance.get("run_dir") if isinstance(provenance, Mapping) else None
    if not isinstance(named, str) or not named:
        return None
    candidates = [Path(named)]
    if not Path(named).is_absolute():
        candidates.append(artifact_path.parent / named)
    return next((c for c in candidates if (c / LEDGER_FILE).is_file()), None)


# ---------------------------------------------------------------------------------------------- formatting


def _esc(value: Any) -> str:
    """Escaped display text of any ledger value; floats keep their exact (round-trip) spelling."""
    return html.escape(_plain_text(value), quote=True)


def _plain_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return repr(value)  # what json.dumps wrote: 0.625 stays 0.625, 1.0 stays 1.0
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return f"<pre>{html.escape(text, quote=True)}</pre>"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """A table whose cells are already-escaped HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv_table(items: Mapping[str, Any]) -> str:
    rows = [(f"<code>{_esc(k)}</code>", _esc(v)) for k, v in items.items()]
    return _table(("key", "value"), rows, "kv")


def _badge(held: Any) -> str:
    if held is True:
        return '<span class="badge ok">held</span>'
    if held is False:
        return '<span class="badge bad">rejected</span>'
    return '<span class="badge">—</span>'


def _short(candidate_id: Any) -> str:
    return f'<code title="{_esc(candidate_id)}">{_esc(candidate_id)}</code>'


def _demo_ids(ids: Any) -> str:
    if not ids:
        return '<span class="muted">no demos</span>'
    if isinstance(ids, list):
        return "demos: " + ", ".join(f"<code>{_esc(i)}</code>" for i in ids)
    return f"demos: {_esc(ids)}"


_CSS = """
:root { --fg:#1d2430; --muted:#667085; --line:#d8dee8; --bg:#ffffff; --panel:#f6f8fb; --ok:#1a7f37; --bad:#c4320a;
        --accent:#2f5fd0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--fg); background: var(--bg); }
main { max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 18px 0 6px; }
.muted, .sub { color: var(--muted); }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
pre { white-space: pre-wrap; word-break: break-word; margin: 0; background: var(--panel); padding: 8px 10px;
      border-radius: 6px; border: 1px solid var(--line); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 5px 8px; text-align: left; vertical-align: top; }
th { background: var(--panel); font-weight: 600; }
table.kv td:first-child { width: 28%; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; }
.card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .value { font-size: 20px; font-weight: 600; margin-top: 2px; }
.card .note { color: var(--muted); font-size: 12px; }
.facts { display: flex; flex-wrap: wrap; gap: 6px 22px; margin: 10px 0; }
.facts span b { color: var(--muted); font-weight: 500; margin-right: 4px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600;
         background: #e9edf3; color: var(--muted); }
.badge.ok { background: #dcf3e2; color: var(--ok); }
.badge.bad { background: #fde4da; color: var(--bad); }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.side .col h4 { margin: 0 0 4px; font-size: 13px; color: var(--muted); }
.changed { border-left: 4px solid var(--accent); padding-left: 8px; }
img.plot { max-width: 100%; border: 1px solid var(--line); border-radius: 6px; }
details { margin: 6px 0; }
summary { cursor: pointer; color: var(--accent); }
.verdicts td { font-size: 13px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def _page(title: str, body: str) -> str:
    import honed

    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            f"<footer>Generated by honed {html.escape(str(getattr(honed, '__version__', '?')))}. "
            "Values are copied from the ledger as written.</footer>\n</main>\n</body>\n</html>\n")


# ---------------------------------------------------------------------------------------------- run report


class _RunReport:
    def __init__(self, run_dir: Path, artifact: tuple[Path, Mapping[str, Any]] | None) -> None:
        self.run_dir = run_dir
        self.artifact = artifact
        try:
            self.records = [r for r in read_ledger(run_dir / LEDGER_FILE) if isinstance(r, dict)]
        except HonedError as exc:
            raise ConfigError(f"{run_dir}: cannot read its ledger: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{run_dir}: cannot read its ledger: {exc}") from exc
        self.settings = read_settings(run_dir)
        self.final = final_record(self.records)
        self.validations = [r for r in self.records if r.get("kind") == "validate"]
        self.claims = [r for r in self.records if r.get("kind") == "claim"]
        self.verifies = [r for r in self.records if r.get("kind") == "verify"]
        self.candidates = self._candidates()
        self.seed = self._seed()
        self.seed_id = (self.seed or {}).get("id") or next(
            (r.get("candidate") for r in self.validations if r.get("step") == "seed/val"), None)

    def _candidates(self) -> dict[str, dict[str, Any]]:
        """Every full candidate JSON in the ledger, by id."""
        found: dict[str, dict[str, Any]] = {}
        for record in self.records:
            candidate = record.get("candidate")
            if isinstance(candidate, dict) and isinstance(candidate.get("id"), str):
                found.setdefault(candidate["id"], candidate)
        return found

    def _seed(self) -> dict[str, Any] | None:
        for record in self.records:
            candidate = record.get("candidate")
            if record.get("kind") == "candidate" and isinstance(candidate, dict) and (
                    record.get("step") == "seed" or candidate.get("origin") == "seed"):
                return candidate
        return None

    # -- page ----------------------------------------------------------------------------------------
    def render(self) -> str:
        s = self.settings
        title = f"honed report: {s.get('optimizer', 'compile')} on {s.get('task') or s.get('task_model') or '?'}"
        parts = [self.header(), self.cost(), self.progress(), self.predictors(), self.reflections(),
                 self.changed_as_intended(), self.following(), self.other_records(), self.stop_reason()]
        if self.artifact is not None:
            path, data = self.artifact
            parts.append("<section id=\"artifact\"><h2>Artifact</h2>"
                         f"<p class=\"muted\">Saved program <code>{_esc(str(path))}</code>; its provenance names "
                         f"this run directory.</p>{_artifact_body(data)}</section>")
        return _page(title, "\n".join(p for p in parts if p))

    def header(self) -> str:
        s = self.settings
        facts = [("task", s.get("task")), ("optimizer", s.get("optimizer")), ("seed", s.get("seed")),
                 ("budget", s.get("budget")), ("task model", s.get("task_model")),
                 ("optimizer model", s.get("optimizer_model"))]
        shown = "".join(f"<span><b>{html.escape(k)}</b>{_esc(v)}</span>" for k, v in facts
                        if v is not None or k in ("task", "optimizer", "seed", "budget"))
        settings = (f"<details><summary>All settings ({len(s)})</summary>{_kv_table(s)}</details>" if s
                    else f"<p class=\"muted\">No {SETTINGS_FILE} in the run directory.</p>")
        status = ("finished" if self.final else "not finished (no <code>final</code> record: running, "
                  "interrupted, or failed)")
        return (f"<header><h1>honed compile report</h1><div class=\"sub\">Run directory "
                f"<code>{_esc(str(self.run_dir))}</code> · {len(self.records)} ledger records · {status}</div>"
                f"<div class=\"facts\">{shown}</div>{settings}</header>")

    # -- cost ----------------------------------------------------------------------------------------
    def sessions(self) -> list[dict[str, Any]]:
        """Per-process segments of the ledger: `paid_calls` and `elapsed_s` restart when a compile resumes."""
        sessions: list[dict[str, Any]] = []
        previous: dict[str, Any] | None = None
        for record in self.records:
            paid, elapsed = record.get("paid_calls"), record.get("elapsed_s")
            restarted = previous is not None and (
                (_is_number(paid) and _is_number(previous.get("paid_calls")) and paid < previous["paid_calls"])
                or (_is_number(elapsed) and _is_number(previous.get("elapsed_s"))
                    and elapsed < previous["elapsed_s"]))
            if not sessions or restarted:
                sessions.append({"paid_calls": None, "elapsed_s": None})
            if _is_number(paid):
                sessions[-1]["paid_calls"] = paid
            if _is_number(elapsed):
                sessions[-1]["elapsed_s"] = elapsed
            previous = record
        return sessions

    def claim_counts(self) -> tuple[Any, Any]:
        if self.final and ("claims" in self.final or "claims_held" in self.final):
            return self.final.get("claims"), self.final.get("claims_held")
        made = [c for c in self.claims if "error" not in c]
        held = sum(any(v.get("held") is True for v in self.verdicts_of(c)) for c in made)
        return len(made), held

    def cost(self) -> str:
        used = [r["budget_used"] for r in self.records if _is_number(r.get("budget_used"))]
        budget = self.settings.get("budget")
        used_max = max(used) if used else None
        sessions = self.sessions()
        paid = [s["paid_calls"] for s in sessions if s["paid_calls"] is not None]
        elapsed = [s["elapsed_s"] for s in sessions if s["elapsed_s"] is not None]
        made, held = self.claim_counts()
        failed = sum("error" in c for c in self.claims)

        def card(label: str, value: str, note: str = "") -> str:
            extra = f"<div class=\"note\">{note}</div>" if note else ""
            return (f"<div class=\"card\"><div class=\"label\">{html.escape(label)}</div>"
                    f"<div class=\"value\">{value}</div>{extra}</div>")

        used_note = ""
        if _is_number(used_max) and _is_number(budget) and budget:
            used_note = f"{100 * used_max / budget:.1f}% of the budget"
        if len(sessions) > 1:
            paid_value = _esc(sum(paid)) if paid else _esc(None)
            paid_note = f"{len(sessions)} sessions: " + " + ".join(_esc(p) for p in paid)
            elapsed_value = (_esc(round(sum(elapsed), 2)) + " s") if elapsed else _esc(None)
            elapsed_note = f"{len(sessions)} sessions: " + " + ".join(_esc(e) + " s" for e in elapsed)
        else:
            paid_value = _esc(paid[0] if paid else None)
            paid_note = "provider calls (cache misses)"
            elapsed_value = (_esc(elapsed[0]) + " s") if elapsed else _esc(None)
            elapsed_note = "wall clock"
        if _is_number(made) and _is_number(held) and made:
            rate, rate_note = f"{100 * held / made:.1f}%", f"{_esc(held)} of {_esc(made)} claims held"
        else:
            rate, rate_note = _esc(None), "no claims made"
        claims_note = f"{failed} reflection(s) failed to parse" if failed else "reflections that proposed a fix"
        cards = [
            card("budget", _esc(budget), "distinct model requests allowed"),
            card("requests used", _esc(used_max), used_note or "distinct model requests"),
            card("paid calls", paid_value, paid_note),
            card("elapsed", elapsed_value, elapsed_note),
            card("claims made", _esc(made), claims_note),
            card("claims held", _esc(held), "fixed what they claimed in verification"),
            card("verification rate", rate, rate_note),
        ]
        if self.final:
            cards.append(card("validation score", f"{_esc(self.final.get('baseline_val_score'))} → "
                              f"{_esc(self.final.get('val_score'))}", "seed → final"))
            gain = self.final.get("gain_over_seed")
            if isinstance(gain, dict):
                verdict = "returned" if gain.get("holds") else "seed kept: the gain may be chance"
                cards.append(card("best candidate vs seed", f"+{_esc(gain.get('wins'))} / −{_esc(gain.get('losses'))}",
                                  f"validation {_esc(gain.get('val_score'))}, sign test p={_esc(gain.get('p_value'))}"
                                  f" (needs ≤ {_esc(gain.get('significance'))}); {verdict}"))
        return f"<section id=\"cost\"><h2>Cost</h2><div class=\"cards\">{''.join(cards)}</div></section>"

    # -- progress --------------------------------------------------------------------------------------
    def full_n(self) -> Any:
        seed_val = next((r for r in self.validations if r.get("step") == "seed/val"), None)
        if seed_val is not None and _is_number(seed_val.get("n")):
            return seed_val["n"]
        ns = [r["n"] for r in self.validations if _is_number(r.get("n"))]
        return max(ns) if ns else None

    def progress(self) -> str:
        if not self.validations:
            return ("<section id=\"progress\"><h2>Validation score vs model calls</h2>"
                    "<p class=\"muted\">The ledger has no validation records yet.</p></section>")
        used = [r["budget_used"] for r in self.records if _is_number(r.get("budget_used"))]
        plot = _score_plot(self.validations, self.seed_id, self.full_n(), self.settings.get("budget"),
                           max(used) if used else None)
        image = (f"<img class=\"plot\" alt=\"validation score vs model calls\" src=\"data:image/png;base64,{plot}\">"
                 if plot else "<p class=\"muted\">The plot needs matplotlib (<code>pip install matplotlib</code>);"
                 " the table below has every value.</p>")
        full_n = self.full_n()
        rows = []
        for r in self.validations:
            cid = r.get("candidate")
            tags = []
            if cid == self.seed_id:
                tags.append("seed")
            if self.final and isinstance(self.final.get("candidate"), dict) and self.final["candidate"].get(
                    "id") == cid:
                tags.append("final")
            if _is_number(r.get("n")) and _is_number(full_n) and r["n"] < full_n:
                tags.append("partial")
            origin = (self.candidates.get(cid) or {}).get("origin") if isinstance(cid, str) else None
            rows.append((f"<code>{_esc(r.get('step'))}</code>", _short(cid), _esc(origin), _esc(", ".join(tags)),
                         _esc(r.get("n")),
                         f"<b>{_esc(r.get('score'))}</b>", _esc(r.get("budget_used"))))
        table = _table(("step", "candidate", "origin", "", "n", "score", "requests used"), rows)
        minibatches = [r for r in self.records if r.get("kind") == "minibatch"]
        mb = ""
        if minibatches:
            mb_rows = [(f"<code>{_esc(r.get('step'))}</code>", _short(r.get("candidate")), _esc(r.get("n")),
                        _esc(r.get("failures")), _esc(r.get("score")), _esc(r.get("budget_used")))
                       for r in minibatches]
            mb = ("<details><summary>Training minibatches (" + str(len(minibatches)) + ")</summary>"
                  + _table(("step", "candidate", "n", "failures", "score", "requests used"), mb_rows)
                  + "</details>")
        return (f"<section id=\"progress\"><h2>Validation score vs model calls</h2>{image}"
                f"<h3>Validation evaluations</h3>{table}{mb}</section>")

    # -- predictors --------------------------------------------------------------------------------------
    def best_known(self) -> tuple[dict[str, Any] | None, str]:
        if self.final and isinstance(self.final.get("candidate"), dict):
            return self.final["candidate"], "final"
        full_n = self.full_n()
        best = None
        for r in self.validations:
            if r.get("n") == full_n and _is_number(r.get("score")) and (best is None or r["score"] > best["score"]):
                best = r
        if best is not None and best.get("candidate") in self.candidates:
            return self.candidates[best["candidate"]], "best so far (no final record)"
        return None, "final"

    def lineage(self, candidate: Mapping[str, Any]) -> str:
        chain, seen = [], set()
        current: Mapping[str, Any] | None = candidate
        while current is not None and current.get("id") not in seen:
            seen.add(current.get("id"))
            chain.append(current)
            parent = current.get("parent")
            current = self.candidates.get(parent) if isinstance(parent, str) else None
        steps = [f"{_short(c.get('id'))} <span class=\"muted\">({_esc(c.get('origin'))})</span>"
                 for c in reversed(chain)]
        return " → ".join(steps)

    def predictors(self) -> str:
        final, label = self.best_known()
        seed_preds = (self.seed or {}).get("predictors") or {}
        final_preds = (final or {}).get("predictors") or {}
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
                return (f"<div class=\"col {cls}\"><h4>{html.escape(title)}</h4>{_pre(state.get('instructions', ''))}"
                        f"<div>{_demo_ids(state.get('demo_ids'))}</div></div>")

            mark = ' <span class="badge ok">changed</span>' if changed else ' <span class="badge">unchanged</span>'
            blocks.append(f"<h3><code>{_esc(name)}</code>{mark if final else ''}</h3><div class=\"side\">"
                          + column("seed", seed_state, bool(seed_state))
                          + column(label, final_state, final is not None and bool(final_state),
                                   "changed" if changed else "")
                          + "</div>")
        lineage = f"<p>Lineage of the {html.escape(label)} candidate: {self.lineage(final)}</p>" if final else ""
        return f"<section id=\"predictors\"><h2>Seed vs final program</h2>{lineage}{''.join(blocks)}</section>"

    # -- reflections ---------------------------------------------------------------------------------
    def verdicts_of(self, claim: Mapping[str, Any]) -> list[dict[str, Any]]:
        prefix = f"{claim.get('step')}/verify/"
        return [v for v in self.verifies if str(v.get("step", "")).startswith(prefix)]

    def reflections(self) -> str:
        if not self.claims:
            return ("<section id=\"claims\"><h2>Reflections</h2><p class=\"muted\">No reflection (claim) records."
                    "</p></section>")
        val_scores: dict[str, list[dict[str, Any]]] = {}
        for r in self.validations:
            val_scores.setdefault(str(r.get("candidate")), []).append(r)
        rows = []
        for claim in self.claims:
            verdicts = self.verdicts_of(claim)
            if "error" in claim:
                what = (f"<span class=\"badge bad\">reflection failed</span> {_esc(claim.get('error'))}"
                        + (f"<details><summary>model response</summary>{_pre(_plain_text(claim.get('response')))}"
                           "</details>" if claim.get("response") is not None else ""))
                proposal = _esc(None)
            else:
                what = _esc(claim.get("cause"))
                proposal = _pre(_plain_text(claim.get("new_instruction")))
                if claim.get("show_examples"):
                    proposal += "<div class=\"muted\">+ asks to show the cited examples as demos</div>"
            shown = claim.get("shown")
            shown_html = ", ".join(f"<code>{_esc(i)}</code>" for i in shown) if isinstance(shown, list) else _esc(
                shown)
            explains = claim.get("explains")
            if verdicts:
                v_rows = []
                for v in verdicts:
                    cand = v.get("candidate") if isinstance(v.get("candidate"), dict) else {"id": v.get("candidate")}
                    scores = val_scores.get(str(cand.get("id")), [])
                    score_text = ", ".join(f"{_esc(s.get('score'))} (n={_esc(s.get('n'))})" for s in scores)
                    v_rows.append((_short(cand.get("id")), _esc(cand.get("origin")),
                                   f"{_esc(v.get('fixed'))}/{_esc(v.get('claimed'))}",
                                   f"{_esc(v.get('regressions'))}/{_esc(v.get('checked_passing'))}",
                                   _badge(v.get("held")), score_text or "<span class=\"muted\">not ranked</span>"))
                verdict_html = _table(("candidate", "edit", "fixed/claimed", "regressions/checked", "verdict",
                                       "validation"), v_rows, "verdicts")
                held = any(v.get("held") is True for v in verdicts)
                claim_badge = _badge(held)
            else:
                verdict_html = "<span class=\"muted\">no candidate verified</span>"
                claim_badge = _badge(None)
            rows.append((f"<code>{_esc(claim.get('step'))}</code>", f"<code>{_esc(claim.get('predictor'))}</code>",
                         shown_html + (f"<div class=\"muted\">explains: {_esc(explains)}</div>"
                                       if explains is not None else ""),
                         what, proposal, verdict_html, claim_badge))
        made, held = self.claim_counts()
        return ("<section id=\"claims\"><h2>Reflections</h2>"
                f"<p>{_esc(made)} claim(s) made, {_esc(held)} held. A claim holds when one of its candidates fixes "
                "at least one cited failure and more failures than it breaks among passing examples.</p>"
                + _table(("step", "predictor", "shown examples", "cause", "proposed instruction", "verification",
                          "claim"), rows) + "</section>")

    # -- question 2 of the diagnostics ------------------------------------------------------------------
    def changed_as_intended(self) -> str:
        """`honed diagnose following`'s totals, for runs whose ledger records verifications."""
        from honed.diagnose.following import following_from_records
        from honed.diagnose.page import changed_as_intended_section

        if not self.verifies:
            return ""
        return changed_as_intended_section(following_from_records(self.run_dir, self.records, self.settings))

    # -- following rates ----------------------------------------------------------------------------------
    def following(self) -> str:
        records = [r for r in self.records if isinstance(r.get("following"), dict)]
        if not records:
            return ""
        steps = list(dict.fromkeys(k for r in records for k in r["following"]))
        rows = []
        for r in records:
            cand = r.get("candidate")
            cid = cand.get("id") if isinstance(cand, dict) else cand
            cells = [f"<code>{_esc(r.get('step'))}</code>", _esc(r.get("kind")), _short(cid) if cid else _esc(None)]
            for step in steps:
                value = r["following"].get(step)
                style = ""
                if _is_number(value) and 0 <= value <= 1:
                    style = f" style=\"background: hsla({round(120 * value)}, 60%, 75%, 0.55)\""
                cells.append(f"<span{style}>{_esc(value)}</span>")
            rows.append(cells)
        return ("<section id=\"following\"><h2>Per-step following rates</h2><p class=\"muted\">Fraction of runs "
                "in which the model followed each procedure step.</p>"
                + _table(("ledger step", "kind", "candidate", *[str(s) for s in steps]), rows) + "</section>")

    # -- unknown kinds -------------------------------------------------------------------------------------
    def other_records(self) -> str:
        linked = {id(v) for c in self.claims for v in self.verdicts_of(c)}
        others = [r for r in self.records if r.get("kind") not in KNOWN_KINDS
                  or (r.get("kind") == "verify" and id(r) not in linked)]
        if not others:
            return ""
        rows = []
        for r in others:
            rest = {k: v for k, v in r.items() if k not in _COMMON_KEYS}
            rows.append((f"<code>{_esc(r.get('step'))}</code>", _esc(r.get("kind")), _esc(r.get("budget_used")),
                         _pre(rest) if rest else _esc(None)))
        kinds = sorted({str(r.get("kind")) for r in others})
        return ("<section id=\"other\"><h2>Other ledger records</h2>"
                f"<p class=\"muted\">Kinds shown as written: {_esc(', '.join(kinds))}.</p>"
                + _table(("step", "kind", "requests used", "record"), rows) + "</section>")

    def stop_reason(self) -> str:
        if self.final is None:
            body = "<p class=\"muted\">No <code>final</code> record: the compile has not finished.</p>"
        else:
            body = _pre(_plain_text(self.final.get("stop_reason")))
        return f"<section id=\"stop\"><h2>Stop reason</h2>{body}</section>"


# ---------------------------------------------------------------------------------------------- plot


def _score_plot(validations: list[dict[str, Any]], seed_id: Any, full_n: Any, budget: Any,
                end: Any = None) -> str | None:
    """Validation score against distinct model requests, as base64 PNG; None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    points = [r for r in validations if _is_number(r.get("budget_used")) and _is_number(r.get("score"))]
    # The Figure API renders on the Agg canvas directly: no pyplot, so no global backend switch or state.
    fig = Figure(figsize=(9, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    def is_full(r: Mapping[str, Any]) -> bool:
        return not (_is_number(r.get("n")) and _is_number(full_n) and r["n"] < full_n)

    groups = {
        "candidate (full validation)": [r for r in points if r.get("candidate") != seed_id and is_full(r)],
        "candidate (partial validation)": [r for r in points if r.get("candidate") != seed_id and not is_full(r)],
    }
    for label, rows in groups.items():
        if not rows:
            continue
        full = label.endswith("(full validation)")
        ax.scatter([r["budget_used"] for r in rows], [r["score"] for r in rows], s=46 if full else 36,
                   facecolors="#2f5fd0" if full else "none", edgecolors="#2f5fd0", linewidths=1.4, label=label,
                   zorder=3)
    seed_rows = [r for r in points if r.get("candidate") == seed_id]
    if seed_rows:
        ax.scatter([r["budget_used"] for r in seed_rows], [r["score"] for r in seed_rows], s=170, marker="*",
                   color="#e8590c", edgecolors="#7a2e05", linewidths=0.8, label="seed", zorder=4)
    full_points = sorted((r for r in points if is_full(r)), key=lambda r: r["budget_used"])
    if full_points:
        xs, ys, best = [], [], None
        for r in full_points:
            best = r["score"] if best is None else max(best, r["score"])
            xs.append(r["budget_used"])
            ys.append(best)
        last_x = max([r["budget_used"] for r in points] + ([end] if _is_number(end) else []))
        xs.append(last_x)
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="#1d2430", linewidth=1.6, label="best so far", zorder=2)
    if len(points) <= _PLOT_POINT_LABELS:
        for r in points:
            ax.annotate(str(r.get("candidate"))[:8], (r["budget_used"], r["score"]), textcoords="offset points",
                        xytext=(5, -11), fontsize=7, color="#667085")
    ax.set_xlabel("distinct model requests used (budget_used)")
    ax.set_ylabel("validation score")
    title = "Validation score vs model calls"
    if _is_number(budget):
        title += f" (budget {budget})"
    ax.set_title(title, fontsize=11)
    ax.set_xlim(left=0)
    scores = [r["score"] for r in points]
    if scores and min(scores) >= 0 and max(scores) <= 1:
        ax.set_ylim(-0.04, 1.06)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


# ---------------------------------------------------------------------------------------------- artifact


def _artifact_body(data: Mapping[str, Any]) -> str:
    program = data.get("program") if isinstance(data.get("program"), Mapping) else {}
    parts = [_kv_table({"schema_version": data.get("schema_version"), "program class": program.get("class"),
                        "init_args": program.get("init_args"), "content_hash": data.get("content_hash")})]
    models = data.get("models")
    if isinstance(models, Mapping) and models:
        rows = []
        for role, entry in models.items():
            entry = entry if isinstance(entry, Mapping) else {"model": entry}
            rest = {k: v for k, v in entry.items() if k != "model"}
            rows.append((_esc(role), f"<code>{_esc(entry.get('model'))}</code>", _esc(rest) if rest else ""))
        parts.append("<h3>Models</h3>" + _table(("role", "model", "details"), rows))
    for name, state in (data.get("predictors") or {}).items():
        state = state if isinstance(state, Mapping) else {}
        signature = state.get("signature") if isinstance(state.get("signature"), Mapping) else {}
        block = [f"<h3>Predictor <code>{_esc(name)}</code></h3>", "<h4>Instructions</h4>",
                 _pre(_plain_text(signature.get("instructions")))]
        fields = signature.get("fields")
        if isinstance(fields, list) and fields:
            block.append(_table(("field", "role", "type", "description"), [
                (f"<code>{_esc(f.get('name'))}</code>", _esc(f.get("role")), _esc(f.get("type")), _esc(f.get("desc")))
                for f in fields if isinstance(f, Mapping)]))
        demos = state.get("demos")
        if isinstance(demos, list) and demos:
            keys = list(dict.fromkeys(k for d in demos if isinstance(d, Mapping) for k in d))
            block.append(f"<h4>Demos ({len(demos)})</h4>" + _table(keys, [
                [_esc(d.get(k)) if isinstance(d, Mapping) else _esc(d) for k in keys] for d in demos]))
        else:
            block.append("<p class=\"muted\">No demos.</p>")
        if state.get("procedure") is not None:
            block.append("<h4>Procedure</h4>" + _pre(state["procedure"]))
        parts.append("".join(block))
    provenance = data.get("provenance")
    if isinstance(provenance, Mapping) and provenance:
        parts.append("<h3>Provenance</h3>" + _kv_table(provenance))
    return "".join(parts)


def _artifact_page(path: Path, data: Mapping[str, Any]) -> str:
    provenance = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    named = provenance.get("run_dir")
    note = (f"Its provenance names run directory <code>{_esc(named)}</code>, which is not available here, so "
            "only the saved program is shown." if named else
            "Its provenance names no run directory, so only the saved program is shown.")
    program = data.get("program") if isinstance(data.get("program"), Mapping) else {}
    title = f"honed artifact: {program.get('class', path.name)}"
    body = (f"<header><h1>honed artifact report</h1><div class=\"sub\">Artifact <code>{_esc(str(path))}</code></div>"
            f"<p class=\"muted\">{note}</p></header><section id=\"artifact\"><h2>Saved program</h2>"
            f"{_artifact_body(data)}</section>")
    return _page(title, body)

