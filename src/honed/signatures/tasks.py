"""Signatures for the two task shapes most programs start from: pick a label, or rewrite a text.

Text outputs can carry a length bound (`max_chars`): it becomes `maxLength` in the JSON schema, so on
`gguf/` models the grammar ends the answer there, and the adapter caps `max_tokens` to match.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

import dspy
import pydantic

from honed.errors import ConfigError

OutputTypeName = Literal["str", "int", "float"]
OUTPUT_TYPES: dict[str, type] = {"str": str, "int": int, "float": float}
# The reasoning step of a reason-then-answer program: "one or two short sentences" fit well within it,
# and the bound makes the step end even when a small model keeps writing.
REASONING_MAX_CHARS = 400


def bounded_text(max_chars: int) -> Any:
    """`str` of at most `max_chars` characters, as a pydantic constraint the JSON schema carries."""
    return Annotated[str, pydantic.StringConstraints(max_length=max_chars)]


def output_annotation(output_type: OutputTypeName = "str", max_chars: int | None = None) -> Any:
    """The annotation for a transformation's output: `int`, `float`, `str`, or `str` bounded by `max_chars`."""
    if output_type not in OUTPUT_TYPES:
        raise ConfigError(f"output_type must be one of {', '.join(OUTPUT_TYPES)}, got {output_type!r}")
    if max_chars is not None and (isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1):
        raise ConfigError(f"max_chars must be a positive integer or None, got {max_chars!r}")
    if output_type != "str":
        return OUTPUT_TYPES[output_type]
    return str if max_chars is None else bounded_text(max_chars)


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
                             instructions: str | None = None, output_type: OutputTypeName = "str",
                             max_chars: int | None = None) -> type[dspy.Signature]:
    """`input_field: str -> output_field: output_type` (a `str` at most `max_chars` long when given)."""
    _check_name(input_field, "input")
    _check_name(output_field, "output")
    if input_field == output_field:
        raise ConfigError(f"input and output fields must differ, both are {input_field!r}")
    annotation = output_annotation(output_type, max_chars)
    text = instructions or f"Given the {input_field}, write the {output_field}."
    return dspy.Signature({input_field: (str, dspy.InputField()), output_field: (annotation, dspy.OutputField())},
                          text)


def reasoning_signature(*, input_field: str = "text", task: str | None = None) -> type[dspy.Signature]:
    """`input_field: str -> reasoning: str` (at most `REASONING_MAX_CHARS`): the first stage of a
    reason-then-answer program."""
    _check_name(input_field, "input")
    if input_field == "reasoning":
        raise ConfigError("the input field of a reasoning step cannot be named 'reasoning'")
    goal = f" The task: {task}" if task else ""
    text = f"Think about the {input_field} step by step in one or two short sentences. Do not answer yet.{goal}"
    reasoning = bounded_text(REASONING_MAX_CHARS)
    return dspy.Signature({input_field: (str, dspy.InputField()), "reasoning": (reasoning, dspy.OutputField())}, text)
