"""The page of a compiled artifact shown alone (its run directory is not at hand), and the artifact's
section of a run's page: program class, models, each predictor's instructions, fields and demos, provenance."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.pages.html import esc, kv_table, page, plain_text, pre, table


def artifact_body(data: Mapping[str, Any]) -> str:
    program = data.get("program") if isinstance(data.get("program"), Mapping) else {}
    parts = [kv_table({"schema_version": data.get("schema_version"), "program class": program.get("class"),
                        "init_args": program.get("init_args"), "content_hash": data.get("content_hash")})]
    models = data.get("models")
    if isinstance(models, Mapping) and models:
        rows = []
        for role, entry in models.items():
            entry = entry if isinstance(entry, Mapping) else {"model": entry}
            rest = {k: v for k, v in entry.items() if k != "model"}
            rows.append((esc(role), f"<code>{esc(entry.get('model'))}</code>", esc(rest) if rest else ""))
        parts.append("<h3>Models</h3>" + table(("role", "model", "details"), rows))
    for name, state in (data.get("predictors") or {}).items():
        state = state if isinstance(state, Mapping) else {}
        signature = state.get("signature") if isinstance(state.get("signature"), Mapping) else {}
        block = [f"<h3>Predictor <code>{esc(name)}</code></h3>", "<h4>Instructions</h4>",
                 pre(plain_text(signature.get("instructions")))]
        fields = signature.get("fields")
        if isinstance(fields, list) and fields:
            block.append(table(("field", "role", "type", "description"), [
                (f"<code>{esc(f.get('name'))}</code>", esc(f.get("role")), esc(f.get("type")), esc(f.get("desc")))
                for f in fields if isinstance(f, Mapping)]))
        demos = state.get("demos")
        if isinstance(demos, list) and demos:
            keys = list(dict.fromkeys(k for d in demos if isinstance(d, Mapping) for k in d))
            block.append(f"<h4>Demos ({len(demos)})</h4>" + table(keys, [
                [esc(d.get(k)) if isinstance(d, Mapping) else esc(d) for k in keys] for d in demos]))
        else:
            block.append("<p class=\"muted\">No demos.</p>")
        if state.get("procedure") is not None:
            block.append("<h4>Procedure</h4>" + pre(state["procedure"]))
        parts.append("".join(block))
    provenance = data.get("provenance")
    if isinstance(provenance, Mapping) and provenance:
        parts.append("<h3>Provenance</h3>" + kv_table(provenance))
    return "".join(parts)


def artifact_page(path: Path, data: Mapping[str, Any]) -> str:
    provenance = data.get("provenance") if isinstance(data.get("provenance"), Mapping) else {}
    named = provenance.get("run_dir")
    note = (f"Its provenance names run directory <code>{esc(named)}</code>, which is not available here, so "
            "only the saved program is shown." if named else
            "Its provenance names no run directory, so only the saved program is shown.")
    program = data.get("program") if isinstance(data.get("program"), Mapping) else {}
    title = f"honed artifact: {program.get('class', path.name)}"
    body = (f"<header><h1>honed artifact report</h1><div class=\"sub\">Artifact <code>{esc(str(path))}</code></div>"
            f"<p class=\"muted\">{note}</p></header><section id=\"artifact\"><h2>Saved program</h2>"
            f"{artifact_body(data)}</section>")
    return page(title, body)

