"""Read task data, rejecting malformed rows with the file, line and field at fault.

Rows are validated line by line here (so errors can point at a line), then handed to
`datasets.Dataset` and turned into `dspy.Example`s with the task's declared input field. Each row, and the
example made from it, remembers where it came from (`source_of`), so a check made later, once the target
model is known (`honed.programs.context_fit`), can still name the file, line and field.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import dspy

from honed.env_settings import env_int
from honed.errors import DatasetError
from honed.text import unpaired_surrogate

_BOM = "\ufeff"
_SOURCE_ATTR = "_honed_source"  # a private attribute: not one of the example's fields, never hashed or saved
_BLANK = object()  # what `_parse_line` returns for a blank line (a line holding `null` is an error, not blank)


@dataclass(frozen=True)
class Source:
    """Where a row's input is in its file: the path, the 1-based line (None in a one-document file such as
    BIG-Bench Hard's) and the field as the file names it (`input`, `examples[3].input`)."""

    path: str
    line: int | None
    field: str


def _as_text_hint(value: Any) -> str:
    """What to do with a value that should have been a string."""
    if isinstance(value, bool | int | float):
        return f"; write it in quotes, e.g. {json.dumps(json.dumps(value))}"
    if isinstance(value, list):
        return "; join the items into one string (or put accepted alternatives in `answers`)"
    if isinstance(value, dict):
        return "; write the text itself, not an object"
    return ""


def _lone_surrogate(text: str) -> str | None:
    """The escape of `text`'s first lone surrogate, for the error message (see `honed.text`)."""
    found = unpaired_surrogate(text)
    return found[1] if found else None


def _check_text(path: str, line: int | None, row: dict, field: str, *, required: bool) -> None:
    if field not in row or row[field] is None:
        if required:
            raise DatasetError(path, line, field, f'is missing; every row needs it, e.g. {{"{field}": "..."}}')
        return
    value = row[field]
    if not isinstance(value, str):
        raise DatasetError(path, line, field, f"must be a string, got {type(value).__name__}{_as_text_hint(value)}")
    if required and not value.strip():
        raise DatasetError(path, line, field, "is empty; write the text, or remove the row")
    bad = _lone_surrogate(value)
    if bad:
        raise DatasetError(path, line, field, f"holds the unpaired surrogate escape {bad}, which is not text; "
                                              "fix the escape (characters outside the BMP need a \\ud8xx\\udcxx pair)")


def _check_answers(path: str, line: int, row: dict) -> None:
    answers = row.get("answers")
    if answers is None:
        return
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise DatasetError(path, line, "answers", 'must be a non-empty list of strings, e.g. ["yes", "y"]')
    for answer in answers:
        bad = _lone_surrogate(answer)
        if bad:
            raise DatasetError(path, line, "answers", f"holds the unpaired surrogate escape {bad}, which is not text")


def _check_id(path: str, line: int, row: dict, seen_ids: dict[str, int]) -> str | None:
    """The row's id as a string (None if it has none); a duplicate names the line that used it first."""
    if "id" not in row:
        return None
    value = row["id"]
    if not isinstance(value, str | int) or isinstance(value, bool) or (isinstance(value, str) and
                                                                       _lone_surrogate(value)):
        raise DatasetError(path, line, "id", f"must be a string or an integer, got {type(value).__name__}")
    key = str(value)
    if key in seen_ids:
        raise DatasetError(path, line, "id", f"duplicates the id {key!r} of line {seen_ids[key]}; ids must be "
                                             "unique within a file: renumber one of the two rows or drop the copy")
    seen_ids[key] = line
    return key


def _json_refusal(exc: ValueError | RecursionError) -> str:
    """Why `json.loads` refused text that is valid JSON syntax: a number too long, or nesting too deep."""
    reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc).splitlines()[0]
    return f"cannot be read as JSON: {reason}"


def _parse_line(path: str, number: int, raw: bytes) -> Any:
    """One line as a JSON value, or `_BLANK` for a blank line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DatasetError(path, number, None, f"is not valid UTF-8 (byte {exc.start}); re-save the file as UTF-8"
                           ) from None
    if number == 1:
        text = text.removeprefix(_BOM)  # editors on Windows start UTF-8 files with a byte-order mark
    if not text.strip():
        return _BLANK
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        extra = "; each line must hold exactly one JSON object" if exc.msg == "Extra data" else \
            "; each line must be one complete JSON object (no line breaks inside it)"
        raise DatasetError(path, number, None, f"is not valid JSON: {exc.msg} at column {exc.colno}{extra}") from None
    except (ValueError, RecursionError) as exc:  # a 5000-digit number, or arrays nested thousands deep
        raise DatasetError(path, number, None, _json_refusal(exc)) from None


# A row longer than this is refused while reading, before it is parsed or held whole: a valid 50 MB line used to
# load, then take 122 s and 6 GB of memory before the model's context refused it.
MAX_LINE_BYTES = env_int("HONED_MAX_LINE_BYTES", 1 << 20, minimum=1)


def capped_lines(handle: BinaryIO, limit: int | None = None) -> Iterator[bytes | None]:
    """Each line of a binary stream (up to and including its `\\n`), read at most `limit` bytes at a time
    (default `MAX_LINE_BYTES`); None for a line longer than that, whose rest is skipped, never held whole."""
    limit = MAX_LINE_BYTES if limit is None else limit
    while chunk := handle.readline(limit + 2):
        if len(chunk.rstrip(b"\r\n")) > limit:  # a cut-off chunk has no line end to strip
            while chunk and not chunk.endswith(b"\n"):
                chunk = handle.readline(limit + 2)
            yield None
            continue
        yield chunk


def _numbered_lines(where: str) -> Iterator[tuple[int, bytes]]:
    """The file's lines with their numbers (as `bytes.splitlines` numbers them), never one over the cap."""
    number = 0
    try:
        with open(where, "rb") as handle:
            for chunk in capped_lines(handle):
                if chunk is None:
                    raise DatasetError(where, number + 1, None, f"is longer than {MAX_LINE_BYTES:,} bytes; "
                                       "shorten the row (or raise HONED_MAX_LINE_BYTES)")
                for raw in chunk.splitlines() or [b""]:
                    number += 1
                    yield number, raw
    except FileNotFoundError:
        raise DatasetError(where, None, None, "file not found; check the path") from None
    except IsADirectoryError:
        raise DatasetError(where, None, None, "cannot be read: Is a directory") from None
    except OSError as exc:
        raise DatasetError(where, None, None, f"cannot be read: {exc.strerror or exc}") from None


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a JSONL task file: `input` and `output` strings, optional `answers` list and `id`.

    A row with `answers` but no `output` takes the first answer as its output. Blank lines are skipped
    (line numbers still count them), Windows line endings and a UTF-8 byte-order mark at the start of the
    file are accepted. Ids, when rows carry them, must be unique within the file: a repeated id is an
    error naming both lines, since a repeated row would count twice in a score and could leak a training
    row into the test split.
    """
    where = str(path)
    rows: list[dict[str, Any]] = []
    seen_ids: dict[str, int] = {}
    for number, raw in _numbered_lines(where):
        row = _parse_line(where, number, raw)
        if row is _BLANK:
            continue
        if not isinstance(row, dict):
            raise DatasetError(where, number, None, f"must be a JSON object such as "
                                                    f'{{"input": "...", "output": "..."}}, got {type(row).__name__}')
        _check_answers(where, number, row)
        if row.get("output") is None and row.get("answers"):
            row["output"] = row["answers"][0]
        _check_text(where, number, row, "input", required=True)
        _check_text(where, number, row, "output", required=True)
        key = _check_id(where, number, row, seen_ids)
        rows.append({"id": key if key is not None else f"{Path(path).stem}-{number}", "input": row["input"],
                     "output": row["output"], "answers": list(row.get("answers") or []),
                     "source": Source(where, number, "input")})
    if not rows:
        raise DatasetError(where, None, None, 'has no rows; a task file needs one JSON object per line, e.g. '
                                              '{"input": "...", "output": "..."}')
    return rows


def read_bbh(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a BIG-Bench Hard file: `{"examples": [{"input": ..., "target": ...}, ...]}`.

    The file is one JSON document, so a bad example is named by its field path (`examples[3].target`);
    a JSON syntax error carries its line.
    """
    where = str(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DatasetError(where, None, None, "file not found; check the name and --bbh-dir") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(where, None, None, f"is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(where, exc.lineno, None, f"is not valid JSON: {exc.msg} at column {exc.colno}") from None
    except OSError as exc:
        raise DatasetError(where, None, None, f"cannot be read: {exc.strerror or exc}") from None
    except (ValueError, RecursionError) as exc:
        raise DatasetError(where, None, None, _json_refusal(exc)) from None
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DatasetError(where, None, "examples", "must be a non-empty list of {input, target} objects")
    rows = []
    for index, example in enumerate(examples):
        field_prefix = f"examples[{index}]"
        if not isinstance(example, dict):
            raise DatasetError(where, None, field_prefix, 'must be an object such as {"input": "...", "target": "..."}')
        for name in ("input", "target"):
            value = example.get(name)
            if not isinstance(value, str) or not value.strip():
                got = "missing" if value is None else type(value).__name__
                raise DatasetError(where, None, f"{field_prefix}.{name}", f"must be a non-empty string, got {got}")
            bad = _lone_surrogate(value)
            if bad:
                raise DatasetError(where, None, f"{field_prefix}.{name}", f"holds the unpaired surrogate escape {bad}")
        rows.append({"id": f"{Path(path).stem}-{index}", "input": example["input"], "output": example["target"],
                     "answers": [], "source": Source(where, None, f"{field_prefix}.input")})
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
    for row, record in zip(rows, dataset, strict=True):
        fields = {k: v for k, v in record.items() if k != "answers" or v}
        example = dspy.Example(**fields).with_inputs(input_field)
        if isinstance(row.get("source"), Source):
            setattr(example, _SOURCE_ATTR, row["source"])
        examples.append(example)
    return examples


def source_of(example: Any) -> Source | None:
    """Where a loaded example's input came from (file, line, field), or None for one made in code.

    A copy (`example.copy()`, `with_inputs`) does not carry it: it is looked up on the loaded examples.
    """
    found = getattr(example, "__dict__", {}).get(_SOURCE_ATTR)
    return found if isinstance(found, Source) else None
