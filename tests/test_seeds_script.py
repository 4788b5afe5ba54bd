"""benchmarks/seeds.py: the verdict over seeds, from compare.json files written as compare.py writes them."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import seeds  # noqa: E402

TASKS = ["a", "b", "c", "d", "e", "f"]


def _row(task: str, optimizer: str, correct: int, n: int = 20) -> dict:
    scores = [1.0] * correct + [0.0] * (n - correct)
    return {"task": task, "optimizer": optimizer, "test_score": correct / n, "test_scores": scores}


def _write(path: Path, seed: int, correct: dict[str, int], *, finished: bool = True, tasks: list[str] = TASKS,
           skip: tuple[str, str] | None = None) -> Path:
    config = {"seed": seed, "tasks": tasks, "optimizers": list(correct)}
    if finished:
        config["wall_s"] = 1.0
    rows = [_row(t, o, c) for t in tasks for o, c in correct.items() if (t, o) != skip]
    path.write_text(json.dumps({"config": config, "rows": rows}))
    return path


def test_a_lead_on_every_task_meets_the_goal_per_seed_and_pooled(tmp_path):
    files = [_write(tmp_path / f"s{seed}.json", seed, {"none": 5, "mipro": 10, "reflective": 14, "behavior": 12})
             for seed in (0, 1)]
    summary = seeds.summarize(seeds.load_tables(files), lead=0.03, beats_none=4)

    for seed in summary["seeds"]:
        assert seed["best_dspy"] == "mipro" and seed["best_ours"] == "reflective"
        assert seed["means"]["reflective"] == 0.7 and seed["beats_uncompiled"] == {"reflective": 6, "behavior": 6}
        assert seed["vs_best_dspy"]["reflective"]["diff"] == 0.2 and seed["vs_best_dspy"]["reflective"]["low"] > 0
        assert seed["goal_holds"] and seed["partial"] is None
    assert summary["pooled"]["goal_holds"] and summary["pooled"]["vs_best_dspy"]["behavior"]["n"] == 240
    assert "| pooled | 12 |" in seeds.markdown(summary)


def test_a_lead_under_the_asked_margin_or_too_few_wins_over_the_seed_is_not_met(tmp_path):
    small = _write(tmp_path / "small.json", 0, {"none": 5, "mipro": 10, "reflective": 10, "behavior": 10})
    few = _write(tmp_path / "few.json", 1, {"none": 12, "mipro": 10, "reflective": 15, "behavior": 11})
    summary = seeds.summarize(seeds.load_tables([small, few]), lead=0.03, beats_none=4)

    by_seed = {s["seed"]: s for s in summary["seeds"]}
    assert by_seed[0]["vs_best_dspy"]["reflective"]["diff"] == 0.0 and not by_seed[0]["lead_holds"]
    assert by_seed[1]["lead_holds"] and by_seed[1]["beats_uncompiled"]["behavior"] == 0
    assert not by_seed[1]["goal_holds"] and not summary["pooled"]["goal_holds"]


def test_a_later_file_of_the_same_seed_replaces_its_rows(tmp_path):
    full = _write(tmp_path / "full.json", 0, {"none": 5, "mipro": 10, "behavior": 8})
    rerun = _write(tmp_path / "rerun.json", 0, {"behavior": 16})
    (table,) = seeds.load_tables([full, rerun])

    assert table["rows"][("a", "behavior")]["test_score"] == 0.8 and table["rows"][("a", "mipro")]["test_score"] == 0.5
    assert table["optimizers"] == ["none", "mipro", "behavior"] and table["partial"] is None


def test_an_unfinished_run_or_a_missing_row_is_labeled_partial_and_its_task_left_out(tmp_path):
    running = _write(tmp_path / "running.json", 2, {"none": 5, "mipro": 10, "behavior": 8}, finished=False,
                     skip=("f", "mipro"))
    (table,) = seeds.load_tables([running])

    assert table["tasks"] == TASKS[:5]
    assert "had not finished" in table["partial"] and "not every optimizer scored f" in table["partial"]
    summary = seeds.summarize([table], lead=0.03, beats_none=4)
    assert summary["config"]["partial"].startswith("seed 2:") and "**Partial:**" in seeds.markdown(summary)


def test_a_file_that_is_not_a_compare_result_names_itself(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SystemExit, match="compare.json") as raised:
        seeds.load_tables([bad])
    assert str(bad) in str(raised.value)


def test_a_seed_whose_runs_have_no_task_in_common_yet_is_shown_empty_and_not_met(tmp_path):
    done = _write(tmp_path / "s0.json", 0, {"none": 5, "mipro": 10, "behavior": 14})
    honed = _write(tmp_path / "s1_honed.json", 1, {"none": 5, "behavior": 14})
    just_started = tmp_path / "s1_dspy.json"
    just_started.write_text(json.dumps({"config": {"seed": 1, "tasks": TASKS, "optimizers": ["mipro"]},
                                        "rows": []}))
    summary = seeds.summarize(seeds.load_tables([done, honed, just_started]), lead=0.03, beats_none=4)

    by_seed = {s["seed"]: s for s in summary["seeds"]}
    assert by_seed[1]["tasks"] == [] and by_seed[1]["means"]["mipro"] is None and not by_seed[1]["goal_holds"]
    assert by_seed[0]["goal_holds"] and summary["pooled"]["vs_best_dspy"]["behavior"]["n"] == 120
    assert not summary["pooled"]["goal_holds"]  # a seed without a verdict cannot count as one that held
    assert "| 1 | 0 | — |" in seeds.markdown(summary)
