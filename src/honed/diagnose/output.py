"""Write a diagnosis as JSON (the machine-readable result) and as an HTML page beside it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.errors import ConfigError


def write_diagnosis(result: Mapping[str, Any], out_dir: str | Path, stem: str | None = None) -> tuple[Path, Path]:
    """`<out_dir>/<stem>.json` and `<stem>.html` (stem: the diagnosis name); returns both paths."""
    from honed.diagnose.page import write_diagnosis_report

    directory = Path(out_dir)
    stem = stem or str(result.get("diagnosis") or "diagnosis")
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the diagnosis to {json_path}: {exc}") from exc
    write_diagnosis_report(result, html_path)
    return json_path, html_path
