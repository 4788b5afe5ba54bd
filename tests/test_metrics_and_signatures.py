"""The default metric's normalization and the task signatures' validation."""

from __future__ import annotations

import typing

import pytest

from honed.errors import ConfigError
from honed.programs.metrics import normalize
from honed.signatures import classification_signature, transformation_signature


@pytest.mark.parametrize(("raw", "expected"), [
    ("  Positive. ", "positive"), ("The  artist\nwas seen!", "the artist was seen"), (None, ""), ("'p'", "p"),
])
def test_normalize(raw, expected):
    assert normalize(raw) == expected


def test_classification_signature_is_typed_with_the_labels():
    sig = classification_signature(["yes", "no", "yes"], input_field="question", output_field="answer")
    annotation = sig.output_fields["answer"].annotation
    assert typing.get_origin(annotation) is typing.Literal
    assert typing.get_args(annotation) == ("yes", "no")
    assert list(sig.input_fields) == ["question"]


@pytest.mark.parametrize("labels", [["only"], ["a", ""], []])
def test_classification_needs_two_real_labels(labels):
    with pytest.raises(ConfigError):
        classification_signature(labels)


@pytest.mark.parametrize(("inp", "out"), [("bad name", "x"), ("x", "x"), ("_private", "y")])
def test_field_names_are_checked(inp, out):
    with pytest.raises(ConfigError):
        transformation_signature(input_field=inp, output_field=out)
