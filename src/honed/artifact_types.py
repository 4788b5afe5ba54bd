"""Field types as JSON that rebuilds into the same Python type, with no code from the file.

A saved `dspy.Predict("question -> answer")` has no class of the user's to rebuild its signature from,
so the artifact must describe each field's type completely: `Literal` values, containers, `int`/`float`/
`bool`, length and range constraints, and pydantic models (by their JSON schema, see `artifact_models`).
Decoding only ever maps these descriptions onto a fixed set of builders; nothing named in the file is
imported or evaluated. A type outside that set (a validator function, an arbitrary class) is still
*described* — by its class path, so a registered program whose code declares the type can be compared
with the file — but cannot be rebuilt; `decode_type` says so.

    "str" | "int" | "float" | "bool" | "bytes" | "null" | "any"
    {"literal": ["a", "b"]}        {"list": T | null}   {"set": T | null}   {"frozenset": T | null}
    {"tuple": [T, ...] | null, "variadic": true?}      {"dict": [K, V] | null}      {"union": [T, ...]}
    {"annotated": T, "metadata": [{"constraint": {"max_length": 40}} | {"string": {...}} | ...]}
    {"model": <JSON schema>}       {"dspy": "Image" | "History" | ...}        {"python": "module:Name"}
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Iterable
from typing import Annotated, Any, Literal

import annotated_types
import dspy
import pydantic
from pydantic.fields import FieldInfo

from honed.artifact_models import TypeSpecError, model_schema, rebuild_model

MAX_DEPTH = 24
_NAMED: tuple[tuple[str, Any], ...] = (("str", str), ("int", int), ("float", float), ("bool", bool),
                                       ("bytes", bytes), ("null", type(None)), ("any", Any))
_KINDS = ("literal", "list", "set", "frozenset", "tuple", "dict", "union", "annotated", "model", "dspy", "python",
          "legacy_v1")
_CONTAINERS: tuple[tuple[str, type], ...] = (("list", list), ("set", set), ("frozenset", frozenset))
# DSPy's own input/output types: rebuilt from this fixed table, never from a name in the file.
_DSPY_TYPES: dict[str, type] = {name: getattr(dspy, name) for name in ("Image", "Audio", "History", "Tool",
                                                                       "ToolCalls") if hasattr(dspy, name)}
# Constraint keywords `pydantic.Field` takes, and their JSON types; StringConstraints' options.
_LENGTHS = ("min_length", "max_length", "max_digits", "decimal_places")
_BOUNDS = ("gt", "ge", "lt", "le", "multiple_of")
_FLAGS = ("strict", "allow_inf_nan")
_STRING_FLAGS = ("strip_whitespace", "to_upper", "to_lower", "strict", "ascii_only")


def class_path(cls: type) -> str:
    """The name an artifact records for a class: `module:QualName`."""
    return f"{cls.__module__}:{cls.__qualname__}"


# ---------------------------------------------------------------------------------------------- encode


def encode_type(annotation: Any, depth: int = 0) -> Any:
    """The JSON description of `annotation`: rebuildable where `decode_type` knows it, else its class path."""
    if depth > MAX_DEPTH:
        raise TypeSpecError(f"the type is nested more than {MAX_DEPTH} levels deep")
    for name, known in _NAMED:
        if annotation is known or (name == "null" and annotation is None):
            return name
    for name, known in _CONTAINERS + (("tuple", tuple), ("dict", dict)):
        if annotation is known:
            return {name: None}
    for name, known in _DSPY_TYPES.items():
        if annotation is known:
            return {"dspy": name}
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return {"annotated": encode_type(args[0], depth + 1), "metadata": encode_metadata(args[1:])}
    if origin is Literal:
        if all(value is None or isinstance(value, str | int) for value in args):  # bool is an int
            return {"literal": list(args)}
        return {"python": repr(annotation)}
    for name, known in _CONTAINERS:
        if origin is known:
            return {name: encode_type(args[0], depth + 1) if args else None}
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"tuple": [encode_type(args[0], depth + 1)], "variadic": True}
        return {"tuple": [encode_type(a, depth + 1) for a in args]}
    if origin is dict:
        return {"dict": [encode_type(a, depth + 1) for a in args] if args else None}
    if origin in (typing.Union, types.UnionType):
        return {"union": [encode_type(a, depth + 1) for a in args]}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        schema = model_schema(annotation)
        return {"model": schema} if schema is not None else {"python": class_path(annotation)}
    if isinstance(annotation, type):
        return {"python": class_path(annotation)}
    return {"python": repr(annotation)}


def _json_scalar(value: Any) -> bool:
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    return value is None or isinstance(value, bool | int | str)


def _attributes(item: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(item):
        return {f.name: getattr(item, f.name) for f in dataclasses.fields(item)}
    return dict(getattr(item, "__dict__", {}))


def encode_metadata(items: Iterable[Any]) -> list[Any]:
    """JSON for the constraints of an `Annotated` type or a field (`max_length`, `ge`, a pattern, ...)."""
    out: list[Any] = []
    for item in items:
        if isinstance(item, pydantic.StringConstraints):
            options = {k: v for k, v in _attributes(item).items() if v is not None}
            if isinstance(options.get("pattern"), re.Pattern):
                options["pattern"] = options["pattern"].pattern
            out.append({"string": options} if all(map(_json_scalar, options.values()))
                       else {"python": class_path(type(item))})
        elif isinstance(item, FieldInfo) and set(item._attributes_set) - {"description", "title"}:
            out.append({"python": class_path(type(item))})  # a default, alias, ...: more than constraints
        elif isinstance(item, FieldInfo):
            entry: dict[str, Any] = {"metadata": encode_metadata(item.metadata)}
            for name in ("description", "title"):
                if getattr(item, name) is not None:
                    entry[name] = getattr(item, name)
            out.append({"field_info": entry})
        elif isinstance(item, annotated_types.GroupedMetadata) and not isinstance(item, annotated_types.BaseMetadata):
            out.extend(encode_metadata(item))
        elif isinstance(item, annotated_types.BaseMetadata):
            options = {k: v for k, v in _attributes(item).items() if v is not None}
            known = set(_LENGTHS + _BOUNDS + _FLAGS + ("pattern",))
            if options and options.keys() <= known and all(map(_json_scalar, options.values())):
                out.append({"constraint": options})
            else:
                out.append({"python": class_path(type(item))})
        else:
            out.append({"python": class_path(type(item))})
    return out


# ---------------------------------------------------------------------------------------------- decode


def _only(spec: dict[str, Any], key: str, allowed: tuple[str, ...] = ()) -> Any:
    extra = set(spec) - {key, *allowed}
    if extra:
        raise TypeSpecError(f"unexpected key {sorted(extra)[0]!r} in type {{{key!r}: ...}}")
    return spec[key]


def decode_type(spec: Any, depth: int = 0) -> Any:
    """The Python type `spec` describes; `TypeSpecError` when it is malformed or cannot be rebuilt."""
    if depth > MAX_DEPTH:
        raise TypeSpecError(f"the type is nested more than {MAX_DEPTH} levels deep")
    if isinstance(spec, str):
        for name, known in _NAMED:
            if spec == name:
                return known
        raise TypeSpecError(f"unknown type name {spec!r}")
    if not isinstance(spec, dict) or not spec:
        raise TypeSpecError(f"a type must be a name or a one-key object, got {type(spec).__name__}")
    kind = next((name for name in _KINDS if name in spec), None)
    if kind == "literal":
        values = _only(spec, "literal")
        if not isinstance(values, list) or not values or not all(
                v is None or isinstance(v, str | int) for v in values):
            raise TypeSpecError("a literal needs a non-empty list of strings, numbers, booleans or null")
        return Literal[tuple(values)]
    for name, container in _CONTAINERS:
        if kind == name:
            inner = _only(spec, name)
            return container if inner is None else container[decode_type(inner, depth + 1)]
    if kind == "tuple":
        items, variadic = _only(spec, "tuple", ("variadic",)), spec.get("variadic", False)
        if items is None:
            return tuple
        if not isinstance(items, list) or variadic not in (True, False) or (variadic and len(items) != 1):
            raise TypeSpecError("a tuple needs a list of item types (one item type when variadic)")
        decoded = tuple(decode_type(item, depth + 1) for item in items)
        return tuple[decoded[0], ...] if variadic else (tuple[decoded] if decoded else tuple[()])
    if kind == "dict":
        pair = _only(spec, "dict")
        if pair is None:
            return dict
        if not isinstance(pair, list) or len(pair) != 2:
            raise TypeSpecError("a dict needs [key type, value type]")
        return dict[decode_type(pair[0], depth + 1), decode_type(pair[1], depth + 1)]
    if kind == "union":
        members = _only(spec, "union")
        if not isinstance(members, list) or not members:
            raise TypeSpecError("a union needs a non-empty list of types")
        return typing.Union[tuple(decode_type(m, depth + 1) for m in members)]  # noqa: UP007
    if kind == "annotated":
        base = decode_type(_only(spec, "annotated", ("metadata",)), depth + 1)
        items = decode_metadata(spec.get("metadata"))
        return Annotated[(base, *items)] if items else base
    if kind == "model":
        return rebuild_model(_only(spec, "model"))
    if kind == "dspy":
        name = _only(spec, "dspy")
        if not isinstance(name, str) or name not in _DSPY_TYPES:
            raise TypeSpecError(f"unknown DSPy type {name!r} (known: {', '.join(_DSPY_TYPES)})")
        return _DSPY_TYPES[name]
    if kind == "python":
        raise TypeSpecError(f"`{_only(spec, 'python')}` is Python code that a JSON artifact cannot rebuild")
    if kind == "legacy_v1":
        raise TypeSpecError("it was saved by schema_version 1, which did not record enough to rebuild it")
    raise TypeSpecError(f"unknown type description with keys {sorted(spec)}")


def _checked_options(options: Any, allowed: Iterable[str], where: str) -> dict[str, Any]:
    if not isinstance(options, dict) or not options:
        raise TypeSpecError(f"{where} needs a non-empty object of options")
    for key, value in options.items():
        if key not in allowed:
            raise TypeSpecError(f"{where} has an unknown option {key!r}")
        if key in _LENGTHS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            raise TypeSpecError(f"{where} option {key!r} must be a non-negative integer")
        if key in _BOUNDS and not (isinstance(value, int | float) and not isinstance(value, bool)
                                   and _json_scalar(value)):
            raise TypeSpecError(f"{where} option {key!r} must be a number")
        if key in _FLAGS + _STRING_FLAGS and not isinstance(value, bool):
            raise TypeSpecError(f"{where} option {key!r} must be true or false")
        if key == "pattern" and not isinstance(value, str):
            raise TypeSpecError(f"{where} option 'pattern' must be a string")
    return options


def decode_metadata(specs: Any) -> list[Any]:
    """The constraint objects `specs` describes, built by pydantic's own constructors."""
    if specs is None:
        return []
    if not isinstance(specs, list):
        raise TypeSpecError("metadata must be a list")
    out: list[Any] = []
    for spec in specs:
        if not isinstance(spec, dict) or len(spec) != 1:
            raise TypeSpecError("each metadata entry must be a one-key object")
        kind, options = next(iter(spec.items()))
        try:
            if kind == "constraint":
                out.extend(pydantic.Field(**_checked_options(options, _LENGTHS + _BOUNDS + _FLAGS + ("pattern",),
                                                             "a constraint")).metadata)
            elif kind == "string":
                out.append(pydantic.StringConstraints(**_checked_options(
                    options, _STRING_FLAGS + ("min_length", "max_length", "pattern"), "a string constraint")))
            elif kind == "field_info":
                if not isinstance(options, dict) or set(options) - {"metadata", "description", "title"}:
                    raise TypeSpecError("field_info holds only metadata, description and title")
                text = {k: options[k] for k in ("description", "title") if k in options}
                if not all(isinstance(v, str) for v in text.values()):
                    raise TypeSpecError("field_info description and title must be strings")
                inner = options.get("metadata") or []
                if isinstance(inner, list) and all(isinstance(m, dict) and list(m) == ["constraint"] for m in inner):
                    merged = {}  # one pydantic.Field again, as `Annotated[T, Field(min_length=2, ...)]` was
                    for m in inner:
                        merged.update(_checked_options(m["constraint"], _LENGTHS + _BOUNDS + _FLAGS + ("pattern",),
                                                       "a constraint"))
                    out.append(pydantic.Field(**text, **merged))
                else:
                    out.extend(decode_metadata(inner))
                    if text:
                        out.append(pydantic.Field(**text))
            elif kind == "python":
                raise TypeSpecError(f"it carries a `{options}` constraint, which is code a JSON artifact cannot "
                                    "rebuild")
            else:
                raise TypeSpecError(f"unknown metadata kind {kind!r}")
        except (TypeError, ValueError) as exc:
            if isinstance(exc, TypeSpecError):
                raise
            raise TypeSpecError(f"invalid {kind} options: {exc}") from None
    return out
