"""Test doubles for honed programs and optimizers, in the manner of pydantic-ai's testing kit.

- `ScriptedLM(fn)`: a `dspy.LM` whose answers come from a plain Python function (or a list, or a
  dict keyed by a substring of the last user message). Drives optimizer logic deterministically.
- `SchemaLM()`: a `dspy.LM` that fabricates an answer valid for the requested JSON schema. For plumbing.
- `trace_step_keys(schema)`: the step keys a keyed reference execution's schema asks for, so that a script
  can answer the behavior optimizer's traces in either form.
- `block_model_requests()`: while active, the embedded provider refuses to run and no socket may
  connect, so a unit test can never reach a real model by accident.

Both fakes are real `dspy.LM`s with a custom engine: they go through DSPy's cache, retries, history
and honed's adapter exactly as a real model would.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import dspy
from dspy.lm15 import Message, Response, TextPart, Usage

from honed.models import guard
from honed.models.schema import schema_from_response_format

Answer = str | dict[str, Any]
ScriptFn = Callable[[list[dict[str, str]], dict[str, Any] | None], Answer]


class FunctionEngine:
    """A DSPy engine (`complete(Request) -> Response`) that answers with `fn(messages, schema)`."""

    supports_response_schema = True
    supported_params = ("temperature", "max_tokens", "response_format", "stop", "seed", "n")

    def __init__(self, fn: ScriptFn) -> None:
        self.fn = fn
        self.calls: list[list[dict[str, str]]] = []
        self._lock = threading.Lock()

    def complete(self, request: Any) -> Response:
        messages: list[dict[str, str]] = []
        if request.system is not None:
            system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
            messages.append({"role": "system", "content": system})
        messages.extend({"role": m.role, "content": m.text or ""} for m in request.messages)
        rf = request.config.response_format
        schema = schema_from_response_format(json.loads(json.dumps(rf))) if rf is not None else None
        with self._lock:
            self.calls.append(messages)
        answer = self.fn(messages, schema)
        text = answer if isinstance(answer, str) else json.dumps(answer)
        words_in = sum(len(m["content"].split()) for m in messages)
        return Response(id=None, model="fake", message=Message.assistant([TextPart(text)]), finish_reason="stop",
                        usage=Usage(input_tokens=words_in, output_tokens=len(text.split()),
                                    total_tokens=words_in + len(text.split())))

    def stream(self, request: Any) -> Iterator[Any]:
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


def _as_function(script: ScriptFn | list[Answer] | dict[str, Answer]) -> ScriptFn:
    if callable(script):
        return script
    if isinstance(script, list):
        answers = iter(list(script))
        lock = threading.Lock()

        def next_answer(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Answer:
            with lock:
                try:
                    return next(answers)
                except StopIteration:
                    raise AssertionError("ScriptedLM ran out of scripted answers") from None

        return next_answer
    if isinstance(script, dict):
        table = dict(script)

        def lookup(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Answer:
            last = messages[-1]["content"]
            for key, answer in table.items():
                if key in last:
                    return answer
            raise AssertionError(f"ScriptedLM has no answer for: {last[:200]!r}")

        return lookup
    raise TypeError("script must be a function, a list of answers, or a dict of substring -> answer")


def ScriptedLM(script: ScriptFn | list[Answer] | dict[str, Answer], *, model: str = "scripted/fake",
               cache: bool = True) -> dspy.LM:
    """A `dspy.LM` answering from `script`; the engine's `.calls` lists the messages of each real call."""
    return dspy.LM(model, engine=FunctionEngine(_as_function(script)), cache=cache, temperature=0.0,
                   max_tokens=512, num_retries=0)


def fabricate(schema: dict[str, Any], defs: dict[str, Any] | None = None) -> Any:
    """A value valid for `schema` (the first enum value, empty strings become "x", zeros, ...)."""
    defs = defs if defs is not None else schema.get("$defs", {})
    if "$ref" in schema:
        return fabricate(defs[schema["$ref"].split("/")[-1]], defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        if combinator in schema:
            return fabricate(schema[combinator][0], defs)
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if kind == "array":
        return [fabricate(schema.get("items", {}), defs) for _ in range(schema.get("minItems", 0))]
    if kind == "object":
        return {name: fabricate(sub, defs) for name, sub in schema.get("properties", {}).items()}
    return {"string": "x", "integer": 0, "number": 0.0, "boolean": False, "array": [], "null": None}[kind]


def trace_step_keys(schema: dict[str, Any]) -> list[str]:
    """The keys a reference execution's `steps` object must carry when its trace is keyed by step
    (`honed.signatures.behavior.keyed_reference_signature`); [] when the trace is a list."""
    steps = schema["properties"]["steps"]
    steps = schema.get("$defs", {}).get(steps.get("$ref", "").rsplit("/", 1)[-1], steps)
    return list(steps.get("properties", {}))


def SchemaLM(*, model: str = "schema/fake", cache: bool = True) -> dspy.LM:
    """A `dspy.LM` that always answers with a JSON object valid for the requested output schema."""

    def answer(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Answer:
        if schema is None:
            raise AssertionError("SchemaLM needs a response_format schema; is honed's adapter configured?")
        return fabricate(schema)

    return ScriptedLM(answer, model=model, cache=cache)


@contextlib.contextmanager
def block_model_requests() -> Iterator[None]:
    """Refuse the embedded provider and every network connection while active."""
    previous = guard.set_blocked(True)
    original_connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> None:
        if self.family == socket.AF_UNIX:
            return original_connect(self, address)
        raise ConnectionRefusedError(f"network access blocked by honed.testing.block_model_requests: {address}")

    socket.socket.connect = refuse  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = original_connect  # type: ignore[method-assign]
        guard.set_blocked(previous)
