"""benchmarks/compare.py end to end on the embedded model, one task, a tiny budget: the result files' schema."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare.py"
ROW_KEYS = {"task", "optimizer", "test_score", "val_score", "calls", "budget", "paid_calls", "tokens", "wall_s",
            "compile_s", "parse_failures", "test_n", "stop_reason", "error", "test_scores", "vs_best_dspy"}


@pytest.mark.model
def test_compare_writes_json_markdown_and_plot_within_the_budget(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, str(SCRIPT), "--tasks", "sentiment", "--optimizers", "none,labeled",
               "--budget", "16", "--limit", "6", "--train-size", "12", "--val-size", "5",
               "--default-adapter-limit", "2",
               "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads((out / "compare.json").read_text())
    assert result["config"]["budget"] == 16 and result["config"]["tasks"] == ["sentiment"]
    rows = {r["optimizer"]: r for r in result["rows"]}
    assert set(rows) == {"none", "labeled", "dspy-default-adapter"}
    for row in rows.values():
        assert set(row) == ROW_KEYS
        assert 0.0 <= row["test_score"] <= 1.0
    assert rows["none"]["test_n"] == rows["labeled"]["test_n"] == 6 and rows["dspy-default-adapter"]["test_n"] == 2
    for name in ("none", "labeled"):
        assert rows[name]["calls"] <= 16 and rows[name]["error"] is None and rows[name]["tokens"] > 0
    assert rows["none"]["calls"] == 0 and rows["labeled"]["calls"] == 10  # two validation passes of 5
    assert rows["none"]["compile_s"] is None and rows["labeled"]["compile_s"] > 0
    # Per-example scores back every row's paired interval against the best DSPy row (here: labeled itself).
    for name in ("none", "labeled"):
        assert len(rows[name]["test_scores"]) == 6 and sum(rows[name]["test_scores"]) / 6 == pytest.approx(
            rows[name]["test_score"], abs=1e-4)
        assert rows[name]["vs_best_dspy"]["against"] == "labeled"
    assert rows["labeled"]["vs_best_dspy"]["diff"] == rows["labeled"]["vs_best_dspy"]["low"] == 0.0
    assert result["config"]["optimizer_model"] == result["config"]["model"] == "gguf/smollm2-135m"
    # Plain DSPy's ChatAdapter cannot be parsed on this model; typed outputs can.
    assert rows["dspy-default-adapter"]["parse_failures"] == 2 and rows["none"]["parse_failures"] == 0
    assert [m["optimizer"] for m in result["mean"]] == ["none", "labeled"]

    table = (out / "compare.md").read_text()
    assert "| optimizer | sentiment | mean test | mean calls |" in table and "| labeled |" in table
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_optimizer_is_a_clear_error(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--optimizers", "none,bogus", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "unknown optimizer: bogus" in done.stderr and "behavior-no-demos" in done.stderr
