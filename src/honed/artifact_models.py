"""Pydantic models rebuilt from their JSON schema with `pydantic.create_model`, never from code.

An output type such as `class Summary(BaseModel)` is stored as `Summary.model_json_schema()`. On load,
that schema is turned back into a model from a closed vocabulary (objects, strings, numbers, booleans,
null, arrays, sets, dicts, `enum`/`const`, `anyOf`, `$ref` to `$defs`, length and range constraints,
titles, descriptions, defaults). The rebuilt model must produce the very same JSON schema again, so the
prompt and the grammar it yields are the ones the saved program sent; a schema using anything outside
the vocabulary (a `format`, aliases, recursion) is refused with the place it differs, at save time.
"""

from __future__ import annotations

import copy
import enum
import typing
import warnings
from typing import Annotated, Any, Literal

import pydantic

MAX_DEPTH = 24
_SCALARS: dict[str, Any] = {"string": str, "integer": int, "number": float, "boolean": bool, "null": type(None)}
# JSON Schema keyword -> pydantic.Field keyword.
_CONSTRAINTS = {"maxLength": "max_length", "minLength": "min_length", "maxItems": "max_length",
                "minItems": "min_length", "pattern": "pattern", "minimum": "ge", "maximum": "le",
                "exclusiveMinimum": "gt", "exclusiveMaximum": "lt", "multipleOf": "multiple_of"}


class TypeSpecError(ValueError):
    """A stored type is malformed or cannot be rebuilt without code; the message says which part and why."""


def model_schema(model: type[pydantic.BaseModel]) -> dict[str, Any] | None:
    """The model's JSON schema, or None when pydantic cannot produce one (e.g. a field holds a callable)."""
    try:
        return model.model_json_schema()
    except (pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError, TypeError, ValueError):
        return None


def rebuild_model(schema: Any) -> type[pydantic.BaseModel]:
    """A pydantic model whose JSON schema equals `schema`; `TypeSpecError` when no such rebuild exists."""
    if not isinstance(schema, dict):
        raise TypeSpecError("a model must be stored as its JSON schema object")
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        raise TypeSpecError("`$defs` must be an object")
    top = {key: value for key, value in schema.items() if key != "$defs"}
    model = _Builder(defs).model(top, 0)
    try:
        rebuilt = model.model_json_schema()
    except Exception as exc:  # pydantic refused the rebuilt model: report, never crash the loader
        raise TypeSpecError(f"the rebuilt model has no JSON schema: {type(exc).__name__}") from None
    if rebuilt != schema:
        raise TypeSpecError(f"model `{schema.get('title')}` cannot be rebuilt exactly from its JSON schema "
                            f"(they differ at {_first_difference(schema, rebuilt)}); JSON artifacts rebuild "
                            "models made of plain fields, lists, dicts, literals, enums and nested models")
    return model


def _first_difference(stored: Any, rebuilt: Any, where: str = "") -> str:
    if isinstance(stored, dict) and isinstance(rebuilt, dict):
        for key in sorted(set(stored) | set(rebuilt), key=str):
            if stored.get(key, ...) != rebuilt.get(key, ...):
                return _first_difference(stored.get(key), rebuilt.get(key), f"{where}/{key}")
    if isinstance(stored, list) and isinstance(rebuilt, list) and len(stored) == len(rebuilt):
        for index, (a, b) in enumerate(zip(stored, rebuilt, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}/{index}")
    return where or "/"


class _Builder:
    """Turns one schema's nodes into types; `$defs` entries are built once and shared by every `$ref`."""

    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs
        self.built: dict[str, Any] = {}
        self.building: set[str] = set()

    def ref(self, ref: Any, depth: int) -> Any:
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            raise TypeSpecError(f"only local `#/$defs/...` references are rebuilt, got {ref!r}")
        name = ref.removeprefix("#/$defs/")
        if name in self.built:
            return self.built[name]
        if name in self.building:
            raise TypeSpecError(f"model `{name}` refers to itself; recursive models are not rebuilt")
        node = self.defs.get(name)
        if not isinstance(node, dict):
            raise TypeSpecError(f"reference {ref!r} names no entry of `$defs`")
        self.building.add(name)
        self.built[name] = self.enum(node) if "enum" in node else self.model(node, depth + 1)
        self.building.discard(name)
        return self.built[name]

    def enum(self, node: dict[str, Any]) -> type[enum.Enum]:
        title, values = node.get("title"), node.get("enum")
        if not isinstance(title, str) or not title.isidentifier() or not isinstance(values, list) or not values:
            raise TypeSpecError("an enum needs a title and a non-empty list of values")
        if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
            raise TypeSpecError(f"enum `{title}` values must be strings or integers")
        return enum.Enum(title, [(f"member_{index}", value) for index, value in enumerate(values)])  # type: ignore[return-value]

    def model(self, node: Any, depth: int) -> type[pydantic.BaseModel]:
        if depth > MAX_DEPTH:
            raise TypeSpecError(f"the model is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(node, dict) or node.get("type") != "object":
            raise TypeSpecError("a model's schema must be an object schema")
        title, properties, required = node.get("title"), node.get("properties", {}), node.get("required", [])
        if not isinstance(title, str) or not title:
            raise TypeSpecError("a model's schema needs a `title` (the class name)")
        if not isinstance(properties, dict) or not isinstance(required, list):
            raise TypeSpecError(f"model `{title}`: `properties` must be an object and `required` a list")
        fields: dict[str, Any] = {}
        for name, sub in properties.items():
            if not name.isidentifier() or name.startswith("_") or hasattr(pydantic.BaseModel, name):
                raise TypeSpecError(f"model `{title}` field {name!r} is not a plain Python name, so it cannot "
                                    "be rebuilt (aliases and names of BaseModel attributes are not)")
            if not isinstance(sub, dict):
                raise TypeSpecError(f"model `{title}` field `{name}` must be a schema object")
            options: dict[str, Any] = {key: sub[key] for key in ("title", "description") if key in sub}
            if not all(isinstance(v, str) for v in options.values()):
                raise TypeSpecError(f"model `{title}` field `{name}`: title and description must be strings")
            if name not in required:
                if "default" not in sub:
                    raise TypeSpecError(f"model `{title}` field `{name}` is optional but has no default")
                options["default"] = copy.deepcopy(sub["default"])
            fields[name] = (self.type(sub, depth + 1), pydantic.Field(**options))
        config = pydantic.ConfigDict(extra="forbid") if node.get("additionalProperties") is False else None
        doc = node.get("description")
        if doc is not None and not isinstance(doc, str):
            raise TypeSpecError(f"model `{title}`: description must be a string")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a `model_name` field: the saved model had it too
                return pydantic.create_model(title, __doc__=doc, __config__=config, **fields)
        except (TypeError, ValueError, pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
            raise TypeSpecError(f"model `{title}` cannot be rebuilt: {str(exc).splitlines()[0]}") from None

    def type(self, sub: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise TypeSpecError(f"the schema is nested more than {MAX_DEPTH} levels deep")
        if not isinstance(sub, dict):
            raise TypeSpecError("each schema node must be an object")
        if "$ref" in sub:
            return self.ref(sub["$ref"], depth)
        if "anyOf" in sub:
            members = sub["anyOf"]
            if not isinstance(members, list) or not members:
                raise TypeSpecError("`anyOf` must be a non-empty list")
            return typing.Union[tuple(self.type(member, depth + 1) for member in members)]  # noqa: UP007
        if "enum" in sub or "const" in sub:
            values = sub["enum"] if "enum" in sub else [sub["const"]]
            if not isinstance(values, list) or not values or not all(
                    v is None or isinstance(v, str | int) for v in values):
                raise TypeSpecError("`enum` must be a non-empty list of strings, numbers, booleans or null")
            return Literal[tuple(values)]
        kind = sub.get("type")
        if kind is None:
            return Any
        if not isinstance(kind, str):
            raise TypeSpecError(f"schema `type` must be a string, got {type(kind).__name__}")
        if kind in _SCALARS:
            base: Any = _SCALARS[kind]
        elif kind == "array":
            container = set if sub.get("uniqueItems") is True else list
            base = container[self.type(sub["items"], depth + 1)] if "items" in sub else container
        elif kind == "object":
            extra = sub.get("additionalProperties", True)
            if "properties" in sub or not (extra is True or isinstance(extra, dict)):
                raise TypeSpecError("an inline object schema is not rebuilt; declare it as a nested model")
            base = dict[str, Any] if extra is True else dict[str, self.type(extra, depth + 1)]
        else:
            raise TypeSpecError(f"schema type {kind!r} is not rebuilt")
        constraints = {_CONSTRAINTS[key]: value for key, value in sub.items() if key in _CONSTRAINTS}
        if not constraints:
            return base
        try:
            return Annotated[base, pydantic.Field(**constraints)]
        except (TypeError, ValueError) as exc:
            raise TypeSpecError(f"invalid constraints {constraints}: {exc}") from None
