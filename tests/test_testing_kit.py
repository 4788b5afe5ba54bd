"""The test doubles behave as documented, and the guard really blocks real models."""

from __future__ import annotations

import socket

import dspy
import pytest

import honed
from honed.errors import ModelRequestBlocked, find_cause
from honed.testing import ScriptedLM, block_model_requests, fabricate


def test_scripted_list_runs_out_loudly(cache_dir):
    honed.configure(model=ScriptedLM([{"output": "one"}]), cache_dir=cache_dir)
    program = honed.Transform()
    assert program(text="a").output == "one"
    with pytest.raises(Exception, match="ran out of scripted answers"):
        program(text="b")


def test_fabricate_follows_refs_and_enums():
    schema = {"type": "object", "properties": {"p": {"$ref": "#/$defs/P"}, "k": {"enum": ["z", "y"]}},
              "$defs": {"P": {"type": "object", "properties": {"n": {"type": "integer"}}}}}
    assert fabricate(schema) == {"p": {"n": 0}, "k": "z"}


def test_embedded_model_is_refused_inside_unit_tests(cache_dir):
    honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir)
    with pytest.raises(Exception) as info:
        dspy.Predict("text -> output")(text="hello")
    assert find_cause(info.value, ModelRequestBlocked) is not None


def test_network_is_refused_inside_unit_tests():
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_guard_restores_on_exit():
    before = socket.socket.connect
    with block_model_requests():
        assert socket.socket.connect is not before
    assert socket.socket.connect is before
