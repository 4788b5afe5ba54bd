"""`honed compile` end to end on the embedded model (tiny budget), and `honed report` on its run."""

from __future__ import annotations

import json

import pytest

from honed.artifact import verify
from honed.cli import main


@pytest.mark.model
def test_compile_writes_an_artifact_and_an_identical_rerun_is_free(capsys, tmp_path, cache_dir):
    argv = ["compile", "sentiment", "--optimizer", "reflective", "--budget", "30", "--seed", "0",
            "--train-size", "8", "--val-size", "6", "--out", str(tmp_path / "a.json"), "--cache-dir", str(cache_dir),
            "--json"]
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    assert {"val_score", "baseline_val_score", "lm_calls", "run_dir", "verification_rate"} <= first.keys()
    assert first["val_score"] >= first["baseline_val_score"]
    assert 0 < first["budget_used"] <= 30 and first["lm_calls"] <= 30
    artifact = verify(tmp_path / "a.json")
    assert artifact["provenance"]["optimizer"] == "reflective"

    argv[argv.index(str(tmp_path / "a.json"))] = str(tmp_path / "b.json")
    assert main(argv) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["lm_calls"] == 0
    assert second["program_hash"] == first["program_hash"]

    assert main(["report", first["run_dir"], "--out", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "data:image/png;base64," in page and str(first["baseline_val_score"]) in page


def test_compile_usage_errors(capsys):
    for argv in (["compile", "sentiment", "--out", "x.json"],  # no optimizer
                 ["compile", "sentiment", "--optimizer", "reflective", "--out", "x.json", "--budget", "0"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2


def test_unknown_optimizer_is_a_one_line_failure(capsys, tmp_path):
    code = main(["compile", "sentiment", "--optimizer", "nope", "--out", str(tmp_path / "x.json"),
                 "--cache-dir", str(tmp_path / "c")])
    assert code == 1
    assert "unknown optimizer 'nope'" in capsys.readouterr().err
