"""Read task data, rejecting malformed rows with the file, line and field at fault.

Rows are validated line by line here (so errors can point at a line), then handed to
`datasets.Dataset` and turned into `dspy.Example`s with the task's declared input field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import dspy

from honed.errors import DatasetError


def _check_text(path: str, line: int | None, row: dict, field: str, *, required: bool) -> None:
    if field not in row or row[field] is None:
        if required:
            raise DatasetError(path, line, field, "is missing; every row needs it")
        return
    if not isinstance(row[field], str):
        raise DatasetError(path, line, field, f"must be a string, got {type(row[field]).__name__}")
    if required and not row[field].strip():
        raise DatasetError(path, line, field, "is empty")


def _check_answers(path: str, line: int, row: dict) -> None:
    answers = row.get("answers")
    if answers is None:
        return
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise DatasetError(path, line, "answers", "must be a non-empty list of strings")


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL task file: `input` and `output` strings, optional `answers` list and `id`.

    A row with `answers` but no `output` takes the first answer as its output.
    """
    where = str(path)
    try:
        raw_lines = Path(path).read_bytes().splitlines()
    except FileNotFoundError:
        raise DatasetError(where, None, None, "file not found") from None
    except OSError as exc:
        raise DatasetError(where, None, None, f"cannot be read: {exc.strerror}") from None
    rows: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    for number, raw in enumerate(raw_lines, start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DatasetError(where, number, None, f"is not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
            ) from None
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DatasetError(where, number, None, f"is not valid JSON: {exc.msg} at column {exc.colno}") from None
        if not isinstance(row, dict):
            raise DatasetError(where, number, None, f"must be a JSON object, got {type(row).__name__}")
        _check_answers(where, number, row)
        if row.get("output") is None and row.get("answers"):
            row["output"] = row["answers"][0]
        _check_text(where, number, row, "input", required=True)
        _check_text(where, number, row, "output", required=True)
        if "id" in row:
            if not isinstance(row["id"], str | int) or isinstance(row["id"], bool):
                raise DatasetError(where, number, "id", "must be a string or an integer")
            key = str(row["id"])
            if key in seen_ids:
                raise DatasetError(where, number, "id", f"duplicates the id {key!r} of line {seen_ids[key]}")
            seen_ids[key] = number
        rows.append({"id": str(row.get("id", f"{Path(path).stem}-{number}")), "input": row["input"],
                     "output": row["output"], "answers": list(row.get("answers") or [])})
    if not rows:
        raise DatasetError(where, None, None, "has no rows; a task file needs one JSON object per line")
    return rows


def read_bbh(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a BIG-Bench Hard file: `{"examples": [{"input": ..., "target": ...}, ...]}`."""
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(where, None, None, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(where, None, None, f"is not valid UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(where, exc.lineno, None, f"is not valid JSON: {exc.msg}") from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DatasetError(where, None, "examples", "must be a non-empty list of {input, target} objects")
    rows = []
    for index, example in enumerate(examples):
        field_prefix = f"examples[{index}]"
        if not isinstance(example, dict):
            raise DatasetError(where, None, field_prefix, "must be an object")
        for name in ("input", "target"):
            value = example.get(name)
            if not isinstance(value, str) or not value.strip():
                raise DatasetError(where, None, f"{field_prefix}.{name}", "must be a non-empty string")
        rows.append({"id": f"{Path(path).stem}-{index}", "input": example["input"], "output": example["target"],
                     "answers": []})
    return rows


def to_examples(rows: Iterable[dict[str, Any]], *, input_field: str, output_field: str) -> list[dspy.Example]:
    """Validated rows -> `datasets.Dataset` -> `dspy.Example`s whose input key is `input_field`."""
    from datasets import Dataset

    rows = list(rows)
    dataset = Dataset.from_list([
        {"id": r["id"], input_field: r["input"], output_field: r["output"], "answers": r.get("answers") or []}
        for r in rows
    ])
    examples = []
    for record in dataset:
        fields = {k: v for k, v in record.items() if k != "answers" or v}
        examples.append(dspy.Example(**fields).with_inputs(input_field))
    return examples
