"""Does a reflection name the planted cause? A keyword test that an echoed example cannot pass.

Optimizers quote the examples they reflect on. A reflection that only repeats a training input which
happens to contain the trigger word has not found the rule, so verbatim copies of training inputs are cut
out of the text first, and only then is it searched for the plant's keywords (case-insensitive, on word
boundaries). One-word inputs are not cut: a one-word echo cannot be told apart from naming the word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydantic import BaseModel, Field

from honed.diagnose.words import keyword_pattern

ECHO_PLACEHOLDER = "[example]"
MIN_ECHO_WORDS = 2  # inputs shorter than this are not treated as echoes
TEXT_LIMIT = 600    # characters of each reflection kept in the JSON and the report

_SPACE = re.compile(r"\s+")


def squash(text: str) -> str:
    """Whitespace collapsed to single spaces, so a re-wrapped quote still counts as a verbatim copy."""
    return _SPACE.sub(" ", str(text)).strip()


class EchoStripper:
    """Cuts verbatim (case-insensitive, whitespace-collapsed) copies of training inputs out of a text."""

    def __init__(self, inputs: Iterable[str]) -> None:
        distinct = {squash(text) for text in inputs}
        self.inputs = sorted((t for t in distinct if len(t.split()) >= MIN_ECHO_WORDS), key=len, reverse=True)
        self._lowered = [t.lower() for t in self.inputs]

    def strip(self, text: str) -> str:
        cleaned = squash(text)
        lowered = cleaned.lower()
        for original, low in zip(self.inputs, self._lowered, strict=True):
            if low in lowered:
                cleaned = re.sub(re.escape(original), ECHO_PLACEHOLDER, cleaned, flags=re.IGNORECASE)
                lowered = cleaned.lower()
        return cleaned


def keyword_hits(text: str, keywords: Iterable[str]) -> list[str]:
    """The keywords found in `text` as whole words, ignoring case, in the order given."""
    return [k for k in keywords if keyword_pattern(k).search(text)]


def names_cause(text: str, keywords: Iterable[str], stripper: EchoStripper) -> bool:
    """Whether `text` names one of `keywords` once the echoed training inputs are cut out."""
    return bool(keyword_hits(stripper.strip(text), keywords))


class ScoredReflection(BaseModel):
    """One reflection and its verdicts (`text` truncated to `TEXT_LIMIT` characters; `chars` is the full length)."""

    kind: str = Field(description="claim | step_edit | draft (from the ledger) or response (an optimizer-model "
                                  "output)")
    step: str | None = Field(description="the ledger step, or 'call N' for a captured response")
    text: str
    chars: int
    keyword_hits: list[str] = Field(description="keywords found after cutting echoed training inputs")
    named: bool = Field(description="the keyword verdict: any keyword found")
    judge: bool | None = Field(default=None, description="the judge model's verdict; null: no judge, or it failed")


def score(kind: str, step: str | None, text: str, keywords: list[str], stripper: EchoStripper,
          limit: int = TEXT_LIMIT) -> ScoredReflection:
    hits = keyword_hits(stripper.strip(text), keywords)
    shown = text if len(text) <= limit else text[: limit - 1] + "…"
    return ScoredReflection(kind=kind, step=step, text=shown, chars=len(text), keyword_hits=hits, named=bool(hits))
