"""Checks on text that honed reads from or writes to files (task data, artifacts)."""

from __future__ import annotations


def unpaired_surrogate(text: str) -> tuple[int, str] | None:
    """The first lone surrogate in `text` as (index, its `\\udXXX` escape), or None.

    Half a surrogate pair comes from a `\\udXXX` JSON escape; it is not text, so no UTF-8 file (and no
    Arrow table) can hold it. Found where it enters, so the error can name the file and the field.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start, f"\\u{ord(text[exc.start]):04x}"
    return None
