"""benchmarks/provider_speed.py runs end to end on tiny numbers and prints and writes what its readers rely on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "provider_speed.py"


def test_unknown_workloads_are_refused():
    done = subprocess.run([sys.executable, str(SCRIPT), "--workloads", "classify,nope"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2 and "unknown workloads: nope" in done.stderr


@pytest.mark.model
def test_provider_speed_compares_both_providers_on_the_same_requests(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--workloads", "classify", "--limit", "4", "--threads", "2",
                           "--json", "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = json.loads(done.stdout.strip().splitlines()[-1])
    assert set(printed) == {"classify"} and printed["classify"]["speedup"] > 0
    result = json.loads((tmp_path / "provider_speed.json").read_text())
    classify = result["classify"]
    assert classify["n"] == 4 and classify["texts_compared"] == 4
    assert classify["answers_equal"] == classify["texts_equal"] == 4
    assert classify["single"]["calls"] == classify["batched"]["calls"] == 4
    # Only the batched loop counts reuse; these ~40-token prompts hold no whole chunk to reuse (prefix_reuse).
    assert classify["single"]["reused_prompt_tokens"] == 0 == classify["batched"]["reused_prompt_tokens"]
    assert classify["batched"]["engine"]["finished"] == 4
    ceiling = result["decode_ceiling"]["gguf/smollm2-135m"]
    assert ceiling["seqs"] == ceiling["exact_width"] == 16  # SmolLM2's Q4_1 decodes 16 rows exactly as one
    assert ceiling["gen_tps_one"] > 0 and ceiling["gen_tps_exact"] == ceiling["gen_tps_batched"] > 0
    assert ceiling["ceiling"] == pytest.approx(ceiling["gen_tps_exact"] / ceiling["gen_tps_one"], abs=0.01)
    assert classify["batched"]["engine"]["exact_width"] == 16
    table = (tmp_path / "provider_speed.md").read_text()
    assert "| classify | gguf/smollm2-135m | 4 |" in table and "the batched loop can at most gain" in table
