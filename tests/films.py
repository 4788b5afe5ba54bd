"""A tiny sentiment-like task shared by the optimizer tests: 'good film N' / 'bad film N'."""

from __future__ import annotations

import dspy

import honed


def data(n: int, offset: int = 0) -> list[dspy.Example]:
    return [dspy.Example(id=f"e{i}", sentence=f"{'bad' if i % 2 else 'good'} film number {i}",
                         sentiment="negative" if i % 2 else "positive").with_inputs("sentence")
            for i in range(offset, offset + n)]


def program() -> honed.Classify:
    return honed.Classify(["positive", "negative"], input_field="sentence", output_field="sentiment",
                          instructions="Classify.")
