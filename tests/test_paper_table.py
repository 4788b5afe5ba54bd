"""benchmarks/paper_table.py: its rows, its intervals against zero-shot and its table, from synthetic rows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import paper_table  # noqa: E402


def _row(name: str, scores: list[float], task: str = "object_counting", target: str = "gguf/smollm2-135m") -> dict:
    return {"row": name, "task": task, "target": target, "test_score": sum(scores) / len(scores),
            "test_scores": scores, "val_score": 0.5, "calls": 10, "test_n": len(scores)}


def test_the_rows_are_the_papers_and_abo_steps_are_refinement_steps():
    assert list(paper_table.ROWS)[:3] == ["zero-shot", "zero-shot CoT", "few-shot (labeled)"]
    assert [paper_table.ROWS[f"ABO step {k}"][2]["refinement_steps"] for k in range(3)] == [0, 1, 2]
    assert paper_table.ROWS["ABO w/o demonstrations"][2]["demonstrations"] is False
    assert paper_table.ROWS["zero-shot CoT"][0] == "pipeline"


def test_every_row_gets_its_paired_interval_against_zero_shot_of_the_same_task_and_target():
    rows = [_row("zero-shot", [0.0, 0.0, 1.0, 0.0]), _row("ABO step 2", [1.0, 1.0, 1.0, 0.0]),
            _row("zero-shot", [1.0, 1.0], target="gguf/qwen2.5-coder-0.5b")]
    paper_table.with_gain_over_zero_shot(rows)
    assert rows[1]["vs_zero_shot"]["diff"] == pytest.approx(0.5)
    assert rows[0]["vs_zero_shot"]["diff"] == 0.0 and rows[2]["vs_zero_shot"]["diff"] == 0.0


def test_markdown_shows_each_cell_the_best_reflection_baseline_and_the_papers_numbers():
    rows = [_row("zero-shot", [0.0, 1.0]), _row("GEPA", [1.0, 1.0]), _row("reflective", [0.0, 0.0])]
    paper_table.with_gain_over_zero_shot(rows)
    config = {"tasks": ["object_counting"], "targets": ["gguf/smollm2-135m"], "rows": list(paper_table.ROWS),
              "optimizer_model": "gguf/qwen2.5-coder-1.5b", "budget": 100, "seed": 0, "limit": None,
              "partial": "the run is still going"}
    paper = {"source": {"title": "the paper"}, "rows": [
        {"method": "ABO Step 2", "task": "Object Counting", "target_model": "Llama-2-70B-chat", "score": "0.885",
         "where": "Table 2"}]}
    page = paper_table.markdown({"config": config, "rows": rows, "paper": paper})
    assert "| GEPA | 1.00 (+0.00, +1.00) |" in page
    assert "| ABO step 1 | — |" in page
    assert "Best reflection baseline: object_counting on gguf/smollm2-135m: GEPA (1.00)" in page
    assert "| ABO Step 2 | Object Counting | Llama-2-70B-chat | 0.885 | Table 2 |" in page
    assert "**Partial:** the run is still going" in page


def test_the_transcribed_paper_numbers_say_where_they_come_from():
    paper = paper_table.paper_numbers()
    assert paper["source"]["arxiv"] == "2402.02101" and paper["source"]["verified"] is False
    assert all({"method", "task", "target_model", "score", "where"} <= set(row) for row in paper["rows"])
