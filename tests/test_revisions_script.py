"""benchmarks/revisions.py: one optimizer's new revision against its old one, on the same seeds and tasks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import revisions  # noqa: E402


def _write(path: Path, seed: int, correct: dict[str, int], optimizer: str = "behavior", n: int = 20) -> Path:
    rows = [{"task": t, "optimizer": optimizer, "test_scores": [1.0] * c + [0.0] * (n - c)} for t, c in correct.items()]
    rows.append({"task": "a", "optimizer": "reflective", "test_scores": [1.0] * n})  # another optimizer: ignored
    path.write_text(json.dumps({"config": {"seed": seed}, "rows": rows}))
    return path


def test_the_new_revision_is_compared_pair_by_pair_and_pooled(tmp_path, capsys):
    old = [_write(tmp_path / "old0.json", 0, {"a": 10, "b": 10}), _write(tmp_path / "old1.json", 1, {"a": 10})]
    new = [_write(tmp_path / "new0.json", 0, {"a": 16, "b": 10, "c": 20}), _write(tmp_path / "new1.json", 1, {"a": 14})]
    assert revisions.main(["--optimizer", "behavior", "--old", *map(str, old), "--new", *map(str, new),
                           "--out", str(tmp_path / "vs.md")]) == 0
    result = json.loads((tmp_path / "vs.md.json").read_text())
    assert [(p["seed"], p["task"]) for p in result["pairs"]] == [(0, "a"), (0, "b"), (1, "a")]  # c: no old row
    assert result["difference"] == pytest.approx((0.3 + 0.0 + 0.2) / 3)
    assert result["low"] > 0 and (result["new_ahead"], result["old_ahead"]) == (2, 0)
    assert "new ahead on 2 pairs, old on 0" in capsys.readouterr().out


def test_runs_on_different_test_examples_are_refused(tmp_path):
    old = _write(tmp_path / "old.json", 0, {"a": 10}, n=20)
    new = _write(tmp_path / "new.json", 0, {"a": 10}, n=30)
    with pytest.raises(SystemExit, match="same test examples"):
        revisions.main(["--optimizer", "behavior", "--old", str(old), "--new", str(new)])
    with pytest.raises(SystemExit, match="no \\(seed, task\\) pair"):
        revisions.main(["--optimizer", "mipro", "--old", str(old), "--new", str(new)])
