"""Reading the compare.json files `benchmarks/compare.py` writes, for the scripts that combine them
(`seeds.py`, `revisions.py`). Kept apart from compare.py so that reading a result does not import honed
and DSPy."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_compare(path: Path) -> dict[str, Any]:
    """One compare.json; a clear exit naming the file when it cannot be read."""
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"{path}: cannot read a compare.json ({exc}); pass the file benchmarks/compare.py "
                         "wrote") from None
