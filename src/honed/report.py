"""`honed report`: a compile's run directory (or a compiled artifact) as one self-contained HTML page.

    from honed.report import build_report, write_report
    write_report("runs/sentiment", "sentiment.html")

The page has no external assets: the CSS is inline and the plot is an embedded base64 PNG, so it can be
mailed, archived or opened offline. This module picks the page for a source (`honed.runs.source`): a run
directory's page (`honed.pages.run_page`, with the artifact when one names the run), or the artifact's
own (`honed.pages.artifact_page`). The HTML kit is `honed.pages.html`; the pages of `honed diagnose`
results are `honed.pages.diagnosis_page`.
"""

from __future__ import annotations

from pathlib import Path

from honed.pages.artifact_page import artifact_page
from honed.pages.html import write_page
from honed.pages.run_page import run_page
from honed.runs.source import artifact_run_dir, resolve_source, run_dir_of

__all__ = ["build_report", "run_dir_of", "write_page", "write_report"]


def build_report(source: str | Path) -> str:
    """The HTML report for `source`: a run directory (or its `ledger.jsonl`), or a compiled artifact JSON.

    An artifact whose `provenance.run_dir` names an existing run directory reports on that run (and shows
    the artifact too); otherwise the artifact is rendered alone. Raises `ConfigError` naming `source` when it
    is neither a run directory with a ledger nor a readable artifact.
    """
    kind, path, payload = resolve_source(Path(source))
    if kind == "run":
        return run_page(path)
    artifact_path, artifact = path, payload
    run_dir = artifact_run_dir(artifact_path, artifact)
    if run_dir is not None:
        return run_page(run_dir, artifact=(artifact_path, artifact))
    return artifact_page(artifact_path, artifact)


def write_report(source: str | Path, out_path: str | Path | None = None) -> Path:
    """Write `build_report(source)` to `out_path` and return the path written.

    `out_path` may be a file or an existing directory (the page is then `report.html` inside it); left out, the
    page goes to `<run dir>/report.html`, or next to an artifact as `<artifact>.html`.
    """
    text = build_report(source)
    if out_path is None:
        kind, path, _ = resolve_source(Path(source))
        target = path / "report.html" if kind == "run" else path.with_suffix(".html")
    else:
        target = Path(out_path)
        if target.is_dir():
            target = target / "report.html"
    return write_page(text, target, "the report")
