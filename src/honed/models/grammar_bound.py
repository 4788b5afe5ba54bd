"""The most tokens a grammar-constrained answer can take, read off the grammar itself.

When every output is bounded (strings with `maxLength`, numbers, booleans, literals, lists with
`maxItems`), the llama.cpp grammar compiled from the schema can only produce finitely many texts. The
longest of them, in UTF-8 bytes, bounds the answer's tokens: every token a byte-level tokenizer emits
holds at least one byte, and the grammar admits no token without text except end-of-sequence. So a
`max_tokens` of that many bytes can never cut a valid answer short, whatever the model writes: raw
multi-byte characters, `\\uXXXX` escapes (6 bytes per character) and the optional spaces the grammar's
`space` rule allows are all counted.

The bound is computed from the GBNF text (not from the JSON schema), so it follows whatever the
installed converter writes. Anything unbounded (`*`, `+`, `{m,}`, a recursive rule) or any syntax this
reader does not know gives None: no cap.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache

from honed.models.schema import canonical_json, gbnf_for_schema

_RULE = re.compile(r"^([A-Za-z0-9_-]+)\s*::=\s*(.*)$")
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_COUNT = re.compile(r"\{\s*(\d+)\s*(,\s*(\d*)\s*)?\}")
_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", '"': '"', "[": "[", "]": "]", "-": "-", "^": "^"}
_ANY_CHAR = 4  # the most UTF-8 bytes one code point takes


class _Unbounded(Exception):
    """The grammar can produce arbitrarily long text (or uses syntax this reader does not know)."""


def _utf8_len(code_point: int) -> int:
    return 1 if code_point < 0x80 else 2 if code_point < 0x800 else 3 if code_point < 0x10000 else 4


def _read_char(text: str, i: int) -> tuple[int, int]:
    """One (possibly escaped) character of a literal or class at `i`: (code point, next index)."""
    if text[i] != "\\":
        return ord(text[i]), i + 1
    kind = text[i + 1]
    widths = {"x": 2, "u": 4, "U": 8}
    if kind in widths:
        digits = text[i + 2:i + 2 + widths[kind]]
        return int(digits, 16), i + 2 + widths[kind]
    if kind in _ESCAPES:
        return ord(_ESCAPES[kind]), i + 2
    raise _Unbounded(f"unknown escape \\{kind}")


class _Reader:
    """A recursive-descent reader of one GBNF rule body that returns its longest text in bytes."""

    def __init__(self, body: str, rule_bytes: Callable[[str], int]) -> None:
        self.text, self.i, self.rule_bytes = body, 0, rule_bytes

    def _skip(self) -> None:
        while self.i < len(self.text) and self.text[self.i].isspace():
            self.i += 1

    def alternatives(self) -> int:
        best = self.sequence()
        self._skip()
        while self.i < len(self.text) and self.text[self.i] == "|":
            self.i += 1
            best = max(best, self.sequence())
            self._skip()
        return best

    def sequence(self) -> int:
        total = 0
        while True:
            self._skip()
            if self.i >= len(self.text) or self.text[self.i] in "|)":
                return total
            total += self.repeated()

    def repeated(self) -> int:
        size = self.item()
        while self.i < len(self.text):
            c = self.text[self.i]
            if c == "?":
                self.i += 1
            elif c in "*+":
                self.i += 1
                if size:
                    raise _Unbounded("unbounded repetition")
            elif c == "{":
                found = _COUNT.match(self.text, self.i)
                if not found:
                    raise _Unbounded("malformed repetition")
                self.i = found.end()
                low, comma, high = found.group(1), found.group(2), found.group(3)
                if comma and not high:
                    if size:
                        raise _Unbounded("unbounded repetition")
                else:
                    size *= int(high if comma else low)
            else:
                break
        return size

    def item(self) -> int:
        self._skip()
        text, c = self.text, self.text[self.i]
        if c == '"':
            self.i += 1
            size = 0
            while text[self.i] != '"':
                point, self.i = _read_char(text, self.i)
                size += _utf8_len(point)
            self.i += 1
            return size
        if c == "[":
            return self._char_class()
        if c == ".":
            self.i += 1
            return _ANY_CHAR
        if c == "(":
            self.i += 1
            size = self.alternatives()
            if self.i >= len(text) or text[self.i] != ")":
                raise _Unbounded("unbalanced parenthesis")
            self.i += 1
            return size
        found = _NAME.match(text, self.i)
        if not found:
            raise _Unbounded(f"unexpected {c!r}")
        self.i = found.end()
        return self.rule_bytes(found.group(0))

    def _char_class(self) -> int:
        text = self.text
        self.i += 1
        negated = text[self.i] == "^"
        widest = _ANY_CHAR if negated else 0
        if negated:
            self.i += 1
        while text[self.i] != "]":
            point, self.i = _read_char(text, self.i)
            if text[self.i] == "-" and text[self.i + 1] != "]":
                point, self.i = _read_char(text, self.i + 1)
            widest = max(widest, _utf8_len(point))
        self.i += 1
        return widest


def max_grammar_bytes(gbnf: str, root: str = "root") -> int | None:
    """The most UTF-8 bytes a text accepted by `gbnf` can have, or None if it is unbounded."""
    bodies: dict[str, str] = {}
    for line in gbnf.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        found = _RULE.match(line)
        if not found:
            return None  # a rule spread over several lines: not what the converter writes
        bodies[found.group(1)] = found.group(2)
    sizes: dict[str, int] = {}
    active: set[str] = set()

    def rule_bytes(name: str) -> int:
        if name in sizes:
            return sizes[name]
        if name in active or name not in bodies:
            raise _Unbounded(f"recursive or unknown rule {name}")
        active.add(name)
        reader = _Reader(bodies[name], rule_bytes)
        size = reader.alternatives()
        if reader.i != len(reader.text):
            raise _Unbounded(f"unread text in rule {name}")
        active.discard(name)
        sizes[name] = size
        return size

    try:
        return rule_bytes(root)
    except (_Unbounded, IndexError, ValueError):
        return None


@lru_cache(maxsize=256)
def _schema_bound(schema_json: str) -> int | None:
    return max_grammar_bytes(gbnf_for_schema(schema_json))


def max_output_tokens(schema: dict) -> int | None:
    """The most tokens an answer decoded under the llama.cpp grammar for `schema` can take (None: unbounded)."""
    return _schema_bound(canonical_json(schema))
