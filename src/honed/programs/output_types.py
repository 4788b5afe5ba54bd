"""The output type a task's training answers call for: `int`, `float`, a label set, or bounded text.

A free `str` output lets a small model write until `max_tokens` ("The answer is 2." repeated 300 times
on `bbh/object_counting`). Typing the output after the data makes a runaway answer impossible by
construction: the type becomes the JSON schema, and for `gguf/` models the schema becomes the decoding
grammar. The rules, in order (every training answer is each row's `output` and all of its `answers`):

1. `int` when every answer is an integer literal that round-trips (`str(int(x)) == x`: "12", "-3";
   not "007", "+3", "1_000" or " 4"), with at most `MAX_INT_DIGITS` digits (the grammar's limit).
2. `float` when every answer is a JSON number literal ("2.5", "-0.25", "1e3") and not all are ints.
3. a label set (`Literal[...]`) when the training outputs form 2..`MAX_LABELS` distinct values.
4. otherwise text of at most `LENGTH_FACTOR` x the longest answer + `LENGTH_SLACK` characters.

Numbers win over labels: a count answered "3", "5", "7" is a number, and the metric compares numbers
as numbers. Every type also records the text bound, which a forced `program="transform"` uses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

OutputKind = Literal["int", "float", "label", "text"]

MAX_LABELS = 10
LENGTH_FACTOR = 2
LENGTH_SLACK = 16
# llama.cpp's JSON grammar writes at most 16 digits per integer part; 15 keeps any training answer
# writable there and exact in an IEEE double for providers that parse numbers as floats.
MAX_INT_DIGITS = 15
_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})(?:\.[0-9]{1,16})?(?:[eE][-+]?[0-9]{1,3})?")


@dataclass(frozen=True)
class OutputType:
    """What a task's output field holds. `max_chars` is the text bound implied by the answers."""

    kind: OutputKind
    max_chars: int
    labels: tuple[str, ...] = ()

    @property
    def type_name(self) -> Literal["int", "float", "str"]:
        """The name `Transform(output_type=...)` takes: labels and text are both strings."""
        return "int" if self.kind == "int" else "float" if self.kind == "float" else "str"

    def as_text(self) -> OutputType:
        """The same answers as plain bounded text (a label set forced into a transformation)."""
        return self if self.kind != "label" else OutputType("text", self.max_chars)

    def describe(self) -> str:
        if self.kind == "label":
            return f"one of {list(self.labels)}"
        if self.kind == "text":
            return f"str of at most {self.max_chars} characters"
        return self.kind


def is_int_literal(text: str) -> bool:
    """An integer written the one way `str(int(...))` writes it, within `MAX_INT_DIGITS` digits."""
    return bool(_INT.fullmatch(text)) and text != "-0" and len(text.lstrip("-")) <= MAX_INT_DIGITS


def is_number_literal(text: str) -> bool:
    """A JSON number literal whose digit runs fit llama.cpp's number grammar."""
    return bool(_NUMBER.fullmatch(text))


def text_bound(answers: Iterable[str]) -> int:
    """The most characters a text answer may have: room for any training answer, twice over."""
    return LENGTH_FACTOR * max((len(a) for a in answers), default=0) + LENGTH_SLACK


def infer_output_type(outputs: Sequence[str], answers: Iterable[str] = (), *, labels: bool = True) -> OutputType:
    """The output type for training `outputs` (one per row) and their alternative `answers`.

    With `labels=False` a small label set is typed as bounded text instead (a forced transformation).
    """
    every = [*outputs, *answers]
    bound = text_bound(every)
    if every and all(is_int_literal(a) for a in every):
        return OutputType("int", bound)
    if every and all(is_number_literal(a) for a in every):
        return OutputType("float", bound)
    distinct = sorted(set(outputs))
    if labels and 2 <= len(distinct) <= MAX_LABELS:
        return OutputType("label", bound, tuple(distinct))
    return OutputType("text", bound)
