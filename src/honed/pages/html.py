"""The HTML kit of honed's pages: escaping, tables, badges, one stylesheet, and the page shell.

Every page honed writes (`honed report`, the diagnosis pages) is one self-contained file: inline CSS,
no scripts, no external assets, a Content-Security-Policy that forbids fetching anything. Every value
shown goes through `esc`, since much of a ledger's text was written by a model.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from honed.errors import ConfigError
from honed.version import __version__


def write_page(page: str, target: Path, what: str) -> Path:
    """Write an HTML page, creating its folder; an unwritable target is a ConfigError naming `what`."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {what} to {target}: {exc}") from exc
    return target


def esc(value: Any) -> str:
    """Escaped display text of any ledger value; floats keep their exact (round-trip) spelling."""
    return html.escape(plain_text(value), quote=True)


def plain_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return repr(value)  # what json.dumps wrote: 0.625 stays 0.625, 1.0 stays 1.0
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
    return f"<pre>{html.escape(text, quote=True)}</pre>"


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], cls: str = "") -> str:
    """A table whose cells are already-escaped HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def kv_table(items: Mapping[str, Any]) -> str:
    rows = [(f"<code>{esc(k)}</code>", esc(v)) for k, v in items.items()]
    return table(("key", "value"), rows, "kv")


def badge(held: Any, yes: str = "held", no: str = "rejected") -> str:
    """A verdict: green `yes` for True, red `no` for False, a grey dash for anything else."""
    if held is True:
        return f'<span class="badge ok">{html.escape(yes)}</span>'
    if held is False:
        return f'<span class="badge bad">{html.escape(no)}</span>'
    return '<span class="badge">—</span>'


def facts_row(items: Iterable[tuple[str, Any]]) -> str:
    """A row of labelled values (a page header's task, optimizer, seed, ...)."""
    return "<div class=\"facts\">" + "".join(f"<span><b>{html.escape(k)}</b>{esc(v)}</span>" for k, v in items) \
        + "</div>"


def short(candidate_id: Any) -> str:
    return f'<code title="{esc(candidate_id)}">{esc(candidate_id)}</code>'


def demo_ids(ids: Any) -> str:
    if not ids:
        return '<span class="muted">no demos</span>'
    if isinstance(ids, list):
        return "demos: " + ", ".join(f"<code>{esc(i)}</code>" for i in ids)
    return f"demos: {esc(ids)}"


CSS = """
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
ol.procedure { margin: 6px 0 12px; padding-left: 26px; }
ol.procedure li { margin: 3px 0; }
ol.procedure code { color: var(--muted); margin-right: 6px; }
"""


def page(title: str, body: str) -> str:
    """A whole page around `body` (HTML already escaped), with the stylesheet inline."""
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{csp}\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
            f"<footer>Generated by honed {html.escape(__version__)}. "
            "Values are copied from the ledger as written.</footer>\n</main>\n</body>\n</html>\n")


