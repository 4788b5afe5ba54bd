"""Signatures for the two task shapes most programs start from: pick a label, or rewrite a text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import dspy

from honed.errors import ConfigError


def _check_name(name: str, role: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_"):
        raise ConfigError(f"{role} field name must be a Python identifier not starting with '_', got {name!r}")
    return name


def classification_signature(labels: Sequence[str], *, input_field: str = "text", output_field: str = "label",
                             instructions: str | None = None) -> type[dspy.Signature]:
    """`input_field: str -> output_field: Literal[*labels]`; decoding can only produce one of the labels."""
    _check_name(input_field, "input")
    _check_name(output_field, "output")
    if input_field == output_field:
        raise ConfigError(f"input and output fields must differ, both are {input_field!r}")
    unique = list(dict.fromkeys(labels))
    if len(unique) < 2 or not all(isinstance(label, str) and label.strip() for label in unique):
        raise ConfigError(f"a classification needs at least two distinct non-empty string labels, got {labels!r}")
    label_type = Literal.__getitem__(tuple(unique))
    text = instructions or f"Classify the {input_field} as one of: {', '.join(unique)}."
    return dspy.Signature(
        {input_field: (str, dspy.InputField()), output_field: (label_type, dspy.OutputField())}, text
    )


def transformation_signature(*, input_field: str = "text", output_field: str = "output",
                             instructions: str | None = None) -> type[dspy.Signature]:
    """`input_field: str -> output_field: str`."""
    _check_name(input_field, "input")
    _check_name(output_field, "output")
    if input_field == output_field:
        raise ConfigError(f"input and output fields must differ, both are {input_field!r}")
    text = instructions or f"Given the {input_field}, write the {output_field}."
    return dspy.Signature({input_field: (str, dspy.InputField()), output_field: (str, dspy.OutputField())}, text)


def reasoning_signature(*, input_field: str = "text", task: str | None = None) -> type[dspy.Signature]:
    """`input_field: str -> reasoning: str`: the first stage of a reason-then-answer program."""
    _check_name(input_field, "input")
    if input_field == "reasoning":
        raise ConfigError("the input field of a reasoning step cannot be named 'reasoning'")
    goal = f" The task: {task}" if task else ""
    text = f"Think about the {input_field} step by step in one or two short sentences. Do not answer yet.{goal}"
    return dspy.Signature({input_field: (str, dspy.InputField()), "reasoning": (str, dspy.OutputField())}, text)
