"""Dataset loading: bundled tasks load, and every malformed row is reported by file, line and field."""

from __future__ import annotations

import json

import pytest

import honed
from honed.errors import DatasetError
from honed.programs.loaders import read_bbh, read_jsonl


def write(path, lines: list[str] | bytes):
    path.write_bytes(lines if isinstance(lines, bytes) else ("\n".join(lines) + "\n").encode())
    return path


def test_bundled_sentiment_loads_with_declared_fields():
    task = honed.load_task("sentiment")
    assert task.kind == "classify" and task.labels == ["negative", "positive"]
    assert len(task.test) == 100 and len(task.train) > 1000
    example = task.test[0]
    assert set(example.inputs().keys()) == {"sentence"}
    assert example.sentiment in task.labels


def test_transformation_tasks_get_the_transform_program():
    task = honed.load_task("first_word_letter")
    assert task.kind == "transform"
    assert isinstance(task.program(), honed.Transform)


def test_unknown_task_names_the_choices():
    with pytest.raises(honed.ConfigError, match="sentiment"):
        honed.load_task("no_such_task")


@pytest.mark.parametrize(
    ("lines", "line", "field", "words"),
    [
        (['{"input": "a", "output": "b"}', '{"output": "b"}'], 2, "input", "missing"),
        (['{"input": 3, "output": "b"}'], 1, "input", "must be a string"),
        (['{"input": "a", "output": "b"}', "{not json"], 2, None, "not valid JSON"),
        (['["a", "b"]'], 1, None, "JSON object"),
        (['{"input": "a"}'], 1, "output", "missing"),
        (['{"input": "  ", "output": "b"}'], 1, "input", "empty"),
        (['{"input": "a", "output": "b", "answers": "b"}'], 1, "answers", "list of strings"),
        (['{"id": 1, "input": "a", "output": "b"}', '{"id": 1, "input": "c", "output": "d"}'], 2, "id", "line 1"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path, lines, line, field, words):
    path = write(tmp_path / "bad.jsonl", lines)
    with pytest.raises(DatasetError) as info:
        read_jsonl(path)
    error = info.value
    assert error.path == str(path) and error.line == line and error.field == field
    assert words in str(error) and f"{path}:{line}" in str(error)


def test_non_utf8_and_empty_files(tmp_path):
    with pytest.raises(DatasetError, match=r"bad\.jsonl:2: .*UTF-8"):
        read_jsonl(write(tmp_path / "bad.jsonl", b'{"input": "a", "output": "b"}\n{"input": "\xff"}\n'))
    with pytest.raises(DatasetError, match="no rows"):
        read_jsonl(write(tmp_path / "empty.jsonl", b"\n\n"))
    with pytest.raises(DatasetError, match="file not found"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_answers_fill_a_missing_output_and_are_accepted_by_the_metric(tmp_path):
    rows = ['{"input": "a", "answers": ["x", "y"]}', '{"input": "b", "output": "z"}']
    train = write(tmp_path / "t.train.jsonl", rows)
    task = honed.task_from_files(train, train, program="transform")
    first = task.train[0]
    assert first.output == "x" and first.answers == ["x", "y"]
    assert task.metric(first, type("P", (), {"output": " Y. "})()) == 1.0
    assert task.metric(first, type("P", (), {"output": "w"})()) == 0.0


def test_program_choice_from_training_labels(tmp_path):
    rows = [json.dumps({"input": f"text {i}", "output": "yes" if i % 2 else "no"}) for i in range(12)]
    path = write(tmp_path / "yn.train.jsonl", rows)
    task = honed.task_from_files(path, path)
    assert task.kind == "classify" and task.labels == ["no", "yes"]
    many = write(tmp_path / "many.train.jsonl", [json.dumps({"input": str(i), "output": str(i)}) for i in range(11)])
    assert honed.task_from_files(many, many).kind == "transform"
    assert honed.task_from_files(path, path, program="transform").kind == "transform"


def test_bbh_loader_and_its_errors(tmp_path):
    good = tmp_path / "navigate.json"
    examples = [{"input": f"q{i}", "target": "Yes" if i % 2 else "No"} for i in range(10)]
    good.write_text(json.dumps({"examples": examples}))
    assert [r["output"] for r in read_bbh(good)][:2] == ["No", "Yes"]
    task = honed.load_task("bbh/navigate", bbh_dir=tmp_path)
    assert len(task.train) + len(task.test) == 10 and task.kind == "classify"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"examples": [{"input": "q", "target": "a"}, {"input": "q2"}]}))
    with pytest.raises(DatasetError) as info:
        read_bbh(bad)
    assert info.value.field == "examples[1].target"
