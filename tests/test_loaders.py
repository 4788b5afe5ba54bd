"""Dataset loading: bundled tasks load, and every malformed row is reported by file, line and field."""

from __future__ import annotations

import json

import pytest

import honed
from honed.errors import DatasetError
from honed.programs.loaders import read_bbh, read_jsonl, to_examples


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
        # wrong types say what to write instead
        (['{"input": 3.5, "output": "b"}'], 1, "input", 'write it in quotes, e.g. "3.5"'),
        (['{"input": ["a", "b"], "output": "b"}'], 1, "input", "join the items into one string"),
        (['{"input": {"text": "a"}, "output": "b"}'], 1, "input", "not an object"),
        (['{"input": "a", "output": true}'], 1, "output", "got bool"),
        (['{"input": "a", "output": "b", "answers": []}'], 1, "answers", "non-empty list"),
        (['{"input": "a", "output": "b", "answers": ["x", 2]}'], 1, "answers", "list of strings"),
        (['{"input": "a", "output": "b", "id": 1.5}'], 1, "id", "string or an integer, got float"),
        (['{"input": "a", "output": "b", "id": null}'], 1, "id", "got NoneType"),
        (['{"input": NaN, "output": "b"}'], 1, "input", "got float"),
        # an id repeated as a string and as a number is the same id, and a duplicate names both lines
        (['{"id": "7", "input": "a", "output": "b"}', "", '{"id": 7, "input": "c", "output": "d"}'], 3, "id",
         "duplicates the id '7' of line 1; ids must be unique"),
        # non-objects, trailing garbage, two objects on one line, a row split over lines
        (['"just text"'], 1, None, "got str"),
        (["null"], 1, None, "got NoneType"),
        (["42"], 1, None, "got int"),
        (['{"input": "a", "output": "b"} trailing'], 1, None, "exactly one JSON object"),
        (['{"input": "a", "output": "b"}{"input": "c", "output": "d"}'], 1, None, "exactly one JSON object"),
        (['{"input": "a",', '"output": "b"}'], 1, None, "no line breaks inside it"),
        (['{"input": "a", "output": "b"}', "[" * 100_000], 2, None, "nested too deeply"),
        (['{"input": "a", "output": "b", "n": ' + "9" * 5000 + "}"], 1, None, "cannot be read as JSON"),
        # a JSON escape of half a surrogate pair is not text (and would crash the Arrow table later)
        (['{"input": "a\\ud800b", "output": "b"}'], 1, "input", "unpaired surrogate escape \\ud800"),
        (['{"input": "a", "output": "b", "answers": ["\\udc00"]}'], 1, "answers", "unpaired surrogate"),
        (['{"input": "a", "output": "b", "id": "\\udc00"}'], 1, "id", "string or an integer"),
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


@pytest.mark.parametrize("content", [b"", b"   \n\t\n", b"\r\n\r\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\n \n"])
def test_files_without_rows_say_so(tmp_path, content):
    path = write(tmp_path / "none.jsonl", content)
    with pytest.raises(DatasetError, match="has no rows; a task file needs one JSON object per line") as info:
        read_jsonl(path)
    assert info.value.path == str(path) and info.value.line is None


def test_a_directory_or_latin1_file_is_a_dataset_error(tmp_path):
    with pytest.raises(DatasetError, match="cannot be read"):
        read_jsonl(tmp_path)
    latin1 = write(tmp_path / "latin1.jsonl", '{"input": "café", "output": "b"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match="not valid UTF-8 .*re-save the file as UTF-8") as info:
        read_jsonl(latin1)
    assert info.value.line == 1


def test_bom_windows_line_endings_and_blank_lines_are_accepted(tmp_path):
    """A file saved by a Windows editor: BOM, CRLF, blank and whitespace-only lines, a final line without \\n."""
    content = ('\ufeff{"input": "a", "output": "x"}\r\n\r\n   \r\n'
               '{"input": "b\\r\\nc", "output": "y", "id": 9}\r\n{"input": "d", "output": "z"}')
    path = write(tmp_path / "win.jsonl", content.encode("utf-8"))
    rows = read_jsonl(path)
    assert [(r["id"], r["input"], r["output"]) for r in rows] == [
        ("win-1", "a", "x"), ("9", "b\r\nc", "y"), ("win-5", "d", "z")]
    examples = to_examples(rows, input_field="text", output_field="label")
    assert [e.text for e in examples] == ["a", "b\r\nc", "d"] and set(examples[0].inputs().keys()) == {"text"}


def test_a_bom_in_the_middle_of_a_file_is_reported_on_its_line(tmp_path):
    content = '{"input": "a", "output": "x"}\n\ufeff{"input": "b", "output": "y"}\n'
    path = write(tmp_path / "cat.jsonl", content.encode())
    with pytest.raises(DatasetError, match="BOM") as info:
        read_jsonl(path)
    assert info.value.line == 2


def test_task_from_files_names_the_file_at_fault(tmp_path):
    train = write(tmp_path / "t.train.jsonl", ['{"input": "a", "output": "x"}', '{"input": "b", "output": "y"}'])
    test = write(tmp_path / "t.test.jsonl", ['{"input": "a", "output": "x"}', '{"input": "b"}'])
    with pytest.raises(DatasetError) as info:
        honed.task_from_files(train, test)
    assert (info.value.path, info.value.line, info.value.field) == (str(test), 2, "output")
    with pytest.raises(DatasetError, match="file not found"):
        honed.task_from_files(tmp_path / "absent.jsonl", test)


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
    assert info.value.field == "examples[1].target" and "got missing" in str(info.value)


@pytest.mark.parametrize(
    ("content", "field", "line", "words"),
    [
        (b'{"examples": [{"input": "q", "target": 3}]}', "examples[0].target", None, "got int"),
        (b'{"examples": ["q"]}', "examples[0]", None, "must be an object"),
        (b'{"examples": []}', "examples", None, "non-empty list"),
        (b'[{"input": "q", "target": "a"}]', "examples", None, "non-empty list"),
        (b'{"examples": [\n{"input": "q",\n "target": "a"},\n]}', None, 4, "not valid JSON"),
        (b'{"examples": [{"input": "\xff", "target": "a"}]}', None, None, "not valid UTF-8"),
        (b'{"examples": [{"input": "\\ud800", "target": "a"}]}', "examples[0].input", None, "unpaired surrogate"),
        (b"[" * 100_000, None, None, "nested too deeply"),
    ],
)
def test_bbh_errors_name_the_field_path(tmp_path, content, field, line, words):
    path = write(tmp_path / "task.json", content)
    with pytest.raises(DatasetError) as info:
        read_bbh(path)
    assert (info.value.path, info.value.field, info.value.line) == (str(path), field, line)
    assert words in str(info.value)


def test_bbh_accepts_a_bom_and_refuses_a_directory(tmp_path):
    body = json.dumps({"examples": [{"input": "q", "target": "a"}]})
    path = write(tmp_path / "bom.json", ("\ufeff" + body).encode())
    assert read_bbh(path)[0]["output"] == "a"
    with pytest.raises(DatasetError, match="cannot be read"):
        read_bbh(tmp_path)


def test_an_oversized_row_is_refused_while_reading_naming_its_line(tmp_path, monkeypatch):
    """A huge line is refused before it is parsed (bounded memory), with file and line; one at the cap loads."""
    import honed.programs.loaders as loaders

    monkeypatch.setattr(loaders, "MAX_LINE_BYTES", 200)
    ok = json.dumps({"input": "x" * 150, "output": "y"})
    path = tmp_path / "big.jsonl"
    path.write_text(ok + "\r\n" + json.dumps({"input": "x" * 5000, "output": "y"}) + "\n" + ok + "\n")
    with pytest.raises(DatasetError, match=r"big.jsonl:2: is longer than 200 bytes; shorten the row"):
        loaders.read_jsonl(path)
    short = json.dumps({"input": "x", "output": "y"})
    path.write_text(ok + "\r\n\n" + short + "\r" + short)
    assert [r["id"] for r in loaders.read_jsonl(path)] == ["big-1", "big-3", "big-4"]
