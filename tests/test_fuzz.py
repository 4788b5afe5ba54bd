"""Fuzzing the two readers of files a user hands honed: task data (JSONL) and compiled artifacts (JSON).

The property for both: whatever the bytes, the reader returns a result or raises honed's own error for
that file (`DatasetError` with the line at fault, `ArtifactError`) — never a KeyError, TypeError,
UnicodeError, RecursionError or anything else a user would see as a crash.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import dspy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import honed
from honed.artifact import content_hash
from honed.errors import ArtifactError, DatasetError
from honed.programs.loaders import read_jsonl, to_examples

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------- values

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-10**30, max_value=10**30)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
# Text that looks like a dataset's, or text that is hard on a loader: blank, Unicode line separators, a BOM,
# NUL, or half a surrogate pair (legal as a JSON escape, but not text).
hostile = st.sampled_from(["", "  ", "\t\n", "\ud800", "a\udc00b", "\u2028", "x\u2029y", "\x85", "\x00", "é",
                           "\ufeff", "\r\n", "😀", "\U0001f600\ud83d"])
texts = st.text(min_size=1, max_size=20) | st.text(min_size=1, max_size=20) | hostile
field_values = texts | json_values
answers = st.lists(texts, max_size=3) | json_values


@st.composite
def rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row near the valid shape: each field present or not, of the right type or not."""
    row: dict[str, Any] = {}
    for name, values in (("input", field_values), ("output", field_values), ("answers", answers),
                         ("id", st.integers(-3, 3) | texts | json_values)):
        if draw(st.booleans()):
            row[name] = draw(values)
    return row


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One line of a JSONL file: a row, any JSON value, blank, raw bytes, or a row with junk around it."""
    kind = draw(st.sampled_from(["row", "row", "row", "value", "blank", "bytes", "junk"]))
    if kind == "blank":
        return draw(st.sampled_from([b"", b"  ", b"\t"]))
    if kind == "bytes":
        return draw(st.binary(max_size=30)).replace(b"\n", b"").replace(b"\r", b"")
    value = draw(rows()) if kind != "value" else draw(json_values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    if kind == "junk":
        text = draw(st.sampled_from(["", "x", ",", "}"])) + text + draw(st.sampled_from(["", " x", "{}", "]"]))
    return text.encode("utf-8", errors="surrogatepass")


def _blank(line: bytes, first: bool) -> bool:
    text = line.decode("utf-8", errors="replace")
    return not (text.removeprefix("\ufeff") if first else text).strip()


def _check(path: Path, physical_lines: list[bytes]) -> None:
    """read_jsonl + to_examples on `path`: examples for every non-blank line, or a DatasetError for a real line."""
    try:
        examples = to_examples(read_jsonl(path), input_field="question", output_field="answer")
    except DatasetError as error:
        assert error.path == str(path)
        if error.line is not None:
            assert 1 <= error.line <= len(physical_lines)
            assert not _blank(physical_lines[error.line - 1], error.line == 1), "an error must point at a line " \
                                                                                  "with something on it"
            assert f"{path}:{error.line}:" in str(error)
        return
    non_blank = [line for number, line in enumerate(physical_lines) if not _blank(line, number == 0)]
    assert len(examples) == len(non_blank)
    for example in examples:
        assert isinstance(example.question, str) and example.question.strip()
        assert isinstance(example.answer, str) and set(example.inputs().keys()) == {"question"}


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


@FUZZ
@given(table=st.lists(st.fixed_dictionaries({"input": texts, "output": texts},
                                            optional={"answers": st.lists(texts, min_size=1, max_size=3),
                                                      "id": st.integers(0, 3) | st.sampled_from(["0", "a", "b"])}),
                      min_size=1, max_size=5),
       ascii_only=st.booleans())
def test_dataset_loader_on_well_formed_rows_with_hostile_text(tmp_path, table, ascii_only):
    """Rows of the right shape whose text is hostile. Exact oracle: a file is refused iff some row has blank
    input/output, half a surrogate pair anywhere, or an id used before; otherwise every row comes back as is."""
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(json.dumps(row, ensure_ascii=ascii_only).encode("utf-8", errors="surrogatepass")
                                for row in table))
    ids = [str(row["id"]) for row in table if "id" in row]
    texts_of = [t for row in table for t in (row["input"], row["output"], *row.get("answers", []), str(row.get("id")))]
    expect_error = (any(not row["input"].strip() or not row["output"].strip() for row in table)
                    or any(_has_surrogate(t) for t in texts_of) or len(ids) != len(set(ids)))
    try:
        examples = to_examples(read_jsonl(path), input_field="question", output_field="answer")
    except DatasetError as error:
        assert expect_error, f"refused a valid file: {error}"
        assert error.line is not None and 1 <= error.line <= len(table) and f"{path}:{error.line}:" in str(error)
        return
    assert not expect_error, "accepted a file with a bad row"
    assert [(e.question, e.answer) for e in examples] == [(row["input"], row["output"]) for row in table]


@FUZZ
@given(content=st.binary(max_size=200))
def test_dataset_loader_on_arbitrary_bytes(tmp_path, content):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    _check(path, content.splitlines())


@FUZZ
@given(body=st.lists(lines(), min_size=0, max_size=6), ending=st.sampled_from([b"\n", b"\r\n"]),
       bom=st.booleans())
def test_dataset_loader_on_lines_of_json(tmp_path, body, ending, bom):
    path = tmp_path / "data.jsonl"
    content = (b"\xef\xbb\xbf" if bom else b"") + ending.join(body)
    path.write_bytes(content)
    _check(path, content.splitlines())


# ---------------------------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def saved_artifact(tmp_path_factory) -> tuple[bytes, dict[str, Any]]:
    """A valid artifact of a program that needs no model: a Classify with a demo and an instruction."""
    program = honed.Classify(["negative", "positive"], input_field="sentence", output_field="sentiment")
    program.predict.signature = program.predict.signature.with_instructions("Is the review positive?")
    program.predict.demos = [dspy.Example(sentence="Loved it.", sentiment="positive")]
    path = tmp_path_factory.mktemp("artifact") / "a.json"
    honed.save(program, path, provenance={"task": "fuzz"})
    return path.read_bytes(), json.loads(path.read_text())


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON document, containers included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _mutate(data: dict[str, Any], path: tuple, how: str, value: Any) -> dict[str, Any]:
    mutated = copy.deepcopy(data)
    if not path:
        return value if how == "replace" else mutated
    parent = mutated
    for part in path[:-1]:
        parent = parent[part]
    key = path[-1]
    if how == "delete":
        del parent[key]
    elif how == "replace":
        parent[key] = value
    elif how == "wrap":
        parent[key] = [parent[key]]
    elif how == "stringify":
        parent[key] = json.dumps(parent[key])
    return mutated


def _load_or_artifact_error(path: Path) -> dspy.Module | None:
    try:
        program = honed.load(path)
    except ArtifactError as error:
        assert error.path == str(path) and str(path) in str(error)
        return None
    assert isinstance(program, dspy.Module)
    return program


mutations = st.sampled_from(["delete", "replace", "wrap", "stringify"])


@FUZZ
@given(data=st.data(), how=mutations, value=json_values | texts, rehash=st.booleans())
def test_artifact_loader_on_mutated_json(tmp_path, saved_artifact, data, how, value, rehash):
    """Any key deleted, replaced, wrapped or turned into a string. Without a new content hash the file must be
    refused; with one (a writer that hashes whatever it writes) it must load or be refused, never crash."""
    _, original = saved_artifact
    path_in_doc = data.draw(st.sampled_from(_paths(original)))
    mutated = _mutate(original, path_in_doc, how, value)
    if rehash and isinstance(mutated, dict):
        mutated["content_hash"] = content_hash(mutated)
    target = tmp_path / "mutated.json"
    target.write_bytes(json.dumps(mutated).encode())
    program = _load_or_artifact_error(target)
    changed = mutated != original
    if program is not None:
        assert isinstance(mutated, dict) and mutated.get("content_hash") == content_hash(mutated)
    if changed and not rehash:
        assert program is None, "an edit without a new content hash must be refused"


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["truncate", "flip", "insert", "garbage"]))
def test_artifact_loader_on_damaged_bytes(tmp_path, saved_artifact, data, kind):
    """Truncated, bit-flipped, spliced or random bytes: refused with ArtifactError unless the damage left the
    JSON equal to the saved artifact (e.g. a flipped bit in whitespace)."""
    raw, original = saved_artifact
    at = data.draw(st.integers(0, len(raw) - 1))
    if kind == "truncate":
        damaged = raw[:at]
    elif kind == "flip":
        damaged = raw[:at] + bytes([raw[at] ^ (1 << data.draw(st.integers(0, 7)))]) + raw[at + 1:]
    elif kind == "insert":
        damaged = raw[:at] + data.draw(st.binary(min_size=1, max_size=8)) + raw[at:]
    else:
        damaged = data.draw(st.binary(max_size=300))
    target = tmp_path / "damaged.json"
    target.write_bytes(damaged)
    program = _load_or_artifact_error(target)
    if program is not None:
        reparsed = json.loads(damaged.decode("utf-8"))
        assert reparsed["content_hash"] == content_hash(reparsed)
        assert reparsed == original or reparsed["content_hash"] == original["content_hash"]
