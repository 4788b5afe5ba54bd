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


def test_the_default_run_dir_is_named_by_every_optimizer_setting(tmp_path, cache_dir):
    """A changed setting (here `significance`) gets its own run, not a refusal to resume the other one."""
    import honed
    from honed.compiling import compile_task
    from honed.optimizers.ledger import read_settings
    from honed.programs.tasks import task_from_files
    from honed.testing import ScriptedLM

    for split, n in (("train", 12), ("test", 2)):
        rows = [{"id": f"{split}{i}", "input": f"word {i}", "output": "yes"} for i in range(n)]
        (tmp_path / f"t.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = task_from_files(tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl", instructions="Say yes.")
    honed.configure(model=ScriptedLM(lambda messages, schema: {"output": "yes"}), cache_dir=cache_dir, num_threads=1)
    runs = [compile_task(task, "reflective", budget=20, cache_dir=tmp_path / "c", progress=False, **options)
            .summary["run_dir"] for options in ({}, {"significance": 1.0}, {})]
    assert runs[0] != runs[1] and runs[0] == runs[2]
    assert [read_settings(r)["significance"] for r in runs[:2]] == [0.2, 1.0]
    assert read_settings(runs[0])["task"] == "t"  # what `honed report` titles the page with


def test_the_default_run_dir_is_named_by_the_optimizer_model_too(tmp_path, cache_dir):
    """Changing only the optimizer model starts its own run instead of colliding with the other's."""
    import honed
    from honed.compiling import compile_task
    from honed.optimizers.ledger import read_settings
    from honed.programs.tasks import task_from_files
    from honed.testing import ScriptedLM

    for split, n in (("train", 12), ("test", 2)):
        rows = [{"id": f"{split}{i}", "input": f"word {i}", "output": "yes"} for i in range(n)]
        (tmp_path / f"t.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = task_from_files(tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl", instructions="Say yes.")
    target = ScriptedLM(lambda messages, schema: {"output": "yes"})
    runs = []
    for reflector in ("scripted/reflector-a", "scripted/reflector-b", "scripted/reflector-a"):
        honed.configure(model=target, optimizer_model=ScriptedLM(lambda m, s: {"output": "yes"}, model=reflector),
                        cache_dir=cache_dir, num_threads=1)
        runs.append(compile_task(task, "reflective", budget=20, cache_dir=tmp_path / "c", progress=False)
                    .summary["run_dir"])
    assert runs[0] != runs[1] and runs[0] == runs[2]
    assert [read_settings(r)["optimizer_model"] for r in runs[:2]] == ["scripted/reflector-a", "scripted/reflector-b"]


def test_a_dspy_optimizer_planned_otherwise_gets_its_own_run_dir(tmp_path, cache_dir, monkeypatch):
    """After an upgrade plans DSPy's hyperparameters differently, a rerun compiles afresh instead of
    refusing to resume the run its earlier plan wrote (the MIPROv2 estimate fix did exactly that)."""
    import honed
    from honed.compiling import compile_task
    from honed.optimizers import dspy_optimizers
    from honed.optimizers.ledger import read_settings
    from honed.programs.tasks import task_from_files
    from honed.testing import ScriptedLM

    for split, n in (("train", 12), ("test", 2)):
        rows = [{"id": f"{split}{i}", "input": f"word {i}", "output": "yes"} for i in range(n)]
        (tmp_path / f"t.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = task_from_files(tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl", instructions="Say yes.")
    honed.configure(model=ScriptedLM(lambda messages, schema: {"output": "yes"}), cache_dir=cache_dir, num_threads=1)
    runs = []
    for k in (16, 4, 16):
        monkeypatch.setitem(dspy_optimizers._PLANNERS, "labeled", lambda *sizes, k=k: {"k": k, "estimated_calls": 0})
        runs.append(compile_task(task, "labeled", budget=20, cache_dir=tmp_path / "c", progress=False)
                    .summary["run_dir"])
    assert runs[0] != runs[1] and runs[0] == runs[2]
    assert [read_settings(r)["hyperparameters"]["k"] for r in runs[:2]] == [16, 4]


def test_a_small_budget_caps_the_validation_set_it_must_rank_with(tmp_path, cache_dir):
    """At budget 30 the seed and two candidates can be ranked on 10 examples, not on 50."""
    import honed
    from honed.compiling import affordable_val_size, compile_task
    from honed.programs.tasks import task_from_files
    from honed.testing import ScriptedLM

    assert affordable_val_size(50, 100, 1) == 33 and affordable_val_size(20, 100, 1) == 20
    assert affordable_val_size(50, 100, 2) == 16 and affordable_val_size(50, 2, 1) == 1
    for split, n in (("train", 90), ("test", 2)):
        rows = [{"id": f"{split}{i}", "input": f"word {i}", "output": "yes"} for i in range(n)]
        (tmp_path / f"t.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = task_from_files(tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl", instructions="Say yes.")
    honed.configure(model=ScriptedLM(lambda messages, schema: {"output": "yes"}), cache_dir=cache_dir, num_threads=1)
    summary = compile_task(task, "reflective", budget=30, val_size=50, cache_dir=tmp_path / "c",
                           progress=False).summary
    assert summary["val_size"] == 10 and "capped at 10 of 50" in summary["val_size_note"]
    unchanged = compile_task(task, "reflective", budget=300, val_size=20, cache_dir=tmp_path / "c",
                             progress=False).summary
    assert unchanged["val_size"] == 20 and "val_size_note" not in unchanged
