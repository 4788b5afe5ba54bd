"""What `honed report` and `honed diagnose following` are pointed at: a run directory, its `ledger.jsonl`,
or a compiled artifact (whose provenance may name the run directory it came from)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from honed.errors import ConfigError
from honed.runs.ledger import LEDGER_FILE


def run_dir_of(source: str | Path) -> Path:
    """The run directory `source` names: itself, the folder of a `ledger.jsonl`, or an artifact's provenance run."""
    kind, path, payload = resolve_source(Path(source))
    if kind == "run":
        return path
    run_dir = artifact_run_dir(path, payload)
    if run_dir is None:
        raise ConfigError(f"{path}: the artifact's provenance names no run directory that exists here; "
                          "pass the run directory itself")
    return run_dir


def resolve_source(path: Path) -> tuple[str, Path, Any]:
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


def artifact_run_dir(artifact_path: Path, artifact: Mapping[str, Any]) -> Path | None:
    """The run directory named in the artifact's provenance, when it exists and holds a ledger."""
    provenance = artifact.get("provenance")
    named = provenance.get("run_dir") if isinstance(provenance, Mapping) else None
    if not isinstance(named, str) or not named:
        return None
    candidates = [Path(named)]
    if not Path(named).is_absolute():
        candidates.append(artifact_path.parent / named)
    return next((c for c in candidates if (c / LEDGER_FILE).is_file()), None)
