"""benchmarks/finalists.py on the embedded model, one task, a tiny budget: every finalist is rebuilt from the
run record, and the one marked returned is the program the compile returned."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "finalists.py"


@pytest.mark.model
def test_finalists_are_rebuilt_from_the_record_and_scored_on_test(tmp_path):
    out = tmp_path / "results"
    command = [sys.executable, str(SCRIPT), "--tasks", "sentiment", "--optimizers", "behavior", "--budget", "24",
               "--limit", "6", "--train-size", "12", "--val-size", "5", "--cache-dir", str(tmp_path / "cache"),
               "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "finalists.json").read_text())
    (row,) = result["rows"]
    assert row["task"] == "sentiment" and row["optimizer"] == "behavior" and row["seed"] == 0
    origins = [f["origin"] for f in row["finalists"]]
    assert "seed" in origins and len(origins) >= 2
    assert sum(f["returned"] for f in row["finalists"]) == 1  # the script checked it scores as returned
    assert row["regret"] == pytest.approx(row["best_test"] - row["returned_test"]) and row["regret"] >= 0
    assert all(f["val"] is not None and 0 <= f["test"] <= 1 for f in row["finalists"])
    assert "| sentiment | behavior | 0 |" in (out / "finalists.md").read_text()

    again = subprocess.run(command, capture_output=True, text=True, timeout=600)  # skips the written compile
    assert again.returncode == 0 and json.loads((out / "finalists.json").read_text()) == result
    other = subprocess.run([*command[:-2], "--budget", "30", "--out", str(out)], capture_output=True, text=True,
                           timeout=600)
    assert other.returncode != 0 and "written under other settings" in other.stderr
