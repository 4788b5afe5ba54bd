"""JSON schemas for a signature's outputs, and the llama.cpp grammars compiled from them.

The schema is what makes a small model's answer parse: the provider turns it into a grammar, so
decoding can only produce a JSON object with exactly the declared fields and types.

String length bounds (`maxLength`) are written as one counted repetition, `char{0,N}`: llama.cpp's
Python converter writes them as N nested optional groups, which the C++ grammar parser refuses (and the
process then crashes) once N reaches the low thousands; the counted form parses at any N and produces
exactly the same strings.

A type that has no JSON form (a callable, `type`, a pydantic model holding one) or a schema llama.cpp's
converter refuses (an unanchored `pattern`) raises `SchemaError` naming the output field — nested as
`field.sub` inside a pydantic model — before any request is sent.
"""

from __future__ import annotations

import functools
import json
from typing import Annotated, Any

import pydantic

from honed.errors import SchemaError


def output_schema(signature: Any) -> dict[str, Any]:
    """The JSON schema of a DSPy signature's output fields, in declaration order, all required."""
    fields: dict[str, Any] = {}
    for name, field in signature.output_fields.items():
        # DSPy keeps `Annotated[...]` constraints (max_length, ...) in the field's metadata; they belong
        # in the schema, where they become part of the decoding grammar.
        annotation = Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
        problem = _json_schema_problem(annotation)
        if problem is not None:
            where, culprit, reason = _nested_culprit(name, field.annotation, problem)
            raise SchemaError(where, culprit, reason)
        fields[name] = (annotation, ...)
    model = pydantic.create_model("Outputs", __config__=pydantic.ConfigDict(extra="forbid"), **fields)
    schema = model.model_json_schema()
    _strip_titles(schema)
    return schema


_SCHEMA_FAILURES = (pydantic.PydanticSchemaGenerationError, pydantic.PydanticInvalidForJsonSchema, TypeError,
                    ValueError, NotImplementedError)


def _json_schema_problem(annotation: Any) -> str | None:
    """Why pydantic cannot write a JSON schema for `annotation`, or None when it can."""
    try:
        pydantic.TypeAdapter(annotation).json_schema()
    except _SCHEMA_FAILURES as exc:
        return f"it has no JSON Schema form ({str(exc).splitlines()[0]})"
    return None


def _nested_culprit(name: str, annotation: Any, problem: str, depth: int = 0) -> tuple[str, Any, str]:
    """Inside a pydantic model, the innermost field whose type is at fault: (`name.sub`, its type, why)."""
    if depth < 8 and isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        for sub_name, sub in annotation.model_fields.items():
            sub_problem = _json_schema_problem(sub.annotation)
            if sub_problem is not None:
                return _nested_culprit(f"{name}.{sub_name}", sub.annotation, sub_problem, depth + 1)
    return name, annotation, problem


def check_grammar(signature: Any, schema: dict[str, Any]) -> None:
    """Compile the llama.cpp grammar for `schema` now; a schema it refuses raises SchemaError naming the field.

    The compiled grammar is memoized, so the provider reuses it for the request that follows.
    """
    try:
        grammar_for_schema(canonical_json(schema))
        return
    except Exception as exc:  # llama.cpp's converter raises AssertionError, ValueError, KeyError, ...
        whole = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    defs = {"$defs": schema["$defs"]} if "$defs" in schema else {}
    for name, sub in schema.get("properties", {}).items():
        single = {"type": "object", "properties": {name: sub}, "required": [name], **defs}
        try:
            grammar_for_schema(canonical_json(single))
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            field = signature.output_fields.get(name)
            annotation = None if field is None else (
                Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation)
            raise SchemaError(name, annotation, f"llama.cpp cannot turn its JSON schema into a grammar ({reason})"
                              ) from None
    first = next(iter(signature.output_fields), "?")
    raise SchemaError(first, None, f"llama.cpp cannot turn the outputs' JSON schema into a grammar ({whole})")


def _strip_titles(node: Any) -> None:
    """Titles are noise for the grammar and the prompt; drop them everywhere."""
    if isinstance(node, dict):
        if isinstance(node.get("title"), str):  # a schema's title; a *field* named "title" maps to a dict
            node.pop("title")
        for value in node.values():
            _strip_titles(value)
    elif isinstance(node, list):
        for value in node:
            _strip_titles(value)


def schema_from_response_format(response_format: Any) -> dict[str, Any] | None:
    """Accept the response_format shapes callers use; return the schema, {} for "any JSON", None for text.

    - OpenAI structured outputs: {"type": "json_schema", "json_schema": {"schema": {...}}}
      (or flat, {"type": "json_schema", "schema": {...}}, as DSPy's canonical requests carry it)
    - llama.cpp / Anyscale style: {"type": "json_object", "schema": {...}}
    - plain JSON mode: {"type": "json_object"}
    - a pydantic model class
    """
    if response_format is None:
        return None
    if isinstance(response_format, type) and issubclass(response_format, pydantic.BaseModel):
        return response_format.model_json_schema()
    if not isinstance(response_format, dict):
        raise ValueError(f"unsupported response_format: {response_format!r}")
    kind = response_format.get("type")
    if kind == "json_schema":
        # OpenAI nests the schema under "json_schema"; DSPy's canonical requests carry it flat.
        nested = response_format.get("json_schema") or {}
        return dict(nested.get("schema") or response_format.get("schema") or {})
    if kind == "json_object":
        return dict(response_format.get("schema") or {})
    if kind in (None, "text"):
        return None
    raise ValueError(f"unsupported response_format type: {kind!r}")


@functools.lru_cache(maxsize=256)
def grammar_for_schema(schema_json: str) -> Any:
    """Compile (and memoize) the llama.cpp grammar for a schema given as canonical JSON text."""
    from llama_cpp import LlamaGrammar

    return LlamaGrammar.from_string(gbnf_for_schema(schema_json), verbose=False)


@functools.lru_cache(maxsize=256)
def gbnf_for_schema(schema_json: str) -> str:
    """The GBNF text of the grammar for a schema given as canonical JSON text ("{}": any JSON value)."""
    if schema_json in ("{}", ""):
        from llama_cpp.llama_grammar import JSON_GBNF

        return JSON_GBNF
    converter = _converter_class()(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)
    schema = converter.resolve_refs(json.loads(schema_json), "stdin")
    converter.visit(schema, "")
    return converter.format_grammar()


# Keys under which the converter writes a string some other way than `char` repeated (or not a string).
_NOT_PLAIN_STRING = ("pattern", "format", "enum", "const", "$ref", "anyOf", "oneOf", "allOf")


@functools.cache
def _converter_class() -> type:
    """llama.cpp's schema converter, with length-bounded strings written as `char{min,max}`.

    Built on first use so that importing honed does not load llama.cpp.
    """
    from llama_cpp.llama_grammar import PRIMITIVE_RULES, RESERVED_NAMES, SchemaConverter

    class CountedStringConverter(SchemaConverter):
        def visit(self, schema: dict[str, Any], name: str) -> str:
            bounded = "minLength" in schema or "maxLength" in schema
            if schema.get("type") != "string" or not bounded or any(key in schema for key in _NOT_PLAIN_STRING):
                return super().visit(schema, name)
            low, high = int(schema.get("minLength", 0)), schema.get("maxLength")
            char = self._add_primitive("char", PRIMITIVE_RULES["char"])
            if high is not None and int(high) == 0:
                body = ""
            else:
                body = f"{char}{{{low},{'' if high is None else int(high)}}} "
            rule_name = name + "-" if name in RESERVED_NAMES else name or "root"
            return self._add_rule(rule_name, f'"\\"" {body}"\\"" space')

    return CountedStringConverter


def canonical_json(schema: dict[str, Any]) -> str:
    return json.dumps(schema, sort_keys=False, separators=(",", ":"))
