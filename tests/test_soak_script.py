"""benchmarks/soak.py runs end to end on tiny numbers and writes the result files its readers rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"
PHASE_KEYS = {"calls", "lm_calls", "cache_hits", "errors", "parse_failures", "crashes", "accuracy", "wall_s",
              "calls_per_s", "rss_mb_start", "rss_mb_peak", "rss_mb_end", "first_error"}


@pytest.mark.model
def test_soak_writes_its_json_and_markdown(tmp_path):
    done = subprocess.run([sys.executable, str(SOAK), "--cached", "50", "--uncached", "3", "--threads", "2",
                           "--chunks", "3", "--cache-dir", str(tmp_path / "cache"), "--out-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "soak.json").read_text())
    assert {"benchmark", "model", "threads", "cache_dir", "machine", "phases", "totals", "bounds",
            "samples"} <= set(result)
    uncached, cached = result["phases"]["uncached"], result["phases"]["cached"]
    assert set(uncached) == set(cached) == PHASE_KEYS
    # A fresh cache: every uncached call reached the model; every cached one was a hit.
    assert (uncached["calls"], uncached["lm_calls"], uncached["cache_hits"]) == (3, 3, 0)
    assert (cached["calls"], cached["lm_calls"], cached["cache_hits"]) == (50, 0, 50)
    assert result["totals"]["calls"] == 53 and result["totals"]["errors"] == 0
    assert 0 < result["totals"]["rss_mb_start"] <= result["totals"]["rss_mb_peak"]
    assert result["bounds"]["memory_cache_entries"] == 3 and result["bounds"]["history_cap"] > 0
    phases = [s["phase"] for s in result["samples"]]
    assert "uncached" in phases and "cached" in phases
    assert all(s["rss_mb"] > 0 for s in result["samples"])
    calls_done = [s["calls_done"] for s in result["samples"]]
    assert calls_done == sorted(calls_done) and calls_done[-1] == 53
    table = (tmp_path / "soak.md").read_text()
    assert "| phase | calls | provider calls |" in table
    assert "| uncached | 3 | 3 | 0 | 0 |" in table and "| cached | 50 | 0 | 50 | 0 |" in table
