"""Reading schema_version 1 artifacts: upgraded on read, never rewritten in place.

Version 1 stored, per field, a type description meant only for comparison (constraints dropped,
pydantic models by class path) and no prefix, and it could only hold registered program classes.
`upgrade_v1` turns such a file into the version 2 shape in memory: each field type is wrapped as
`{"legacy_v1": <old description>}`, which the loader compares with `describe_type_v1` of the code's
type, exactly as version 1 did, and which can never be mistaken for a type to rebuild from JSON.
"""

from __future__ import annotations

import copy
import enum
import types
import typing
from typing import Any, Literal

import pydantic

from honed.artifact_models import model_schema


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def describe_type_v1(annotation: Any) -> Any:
    """Version 1's description of a field type (kept verbatim: old files are compared with it)."""
    if annotation in (str, int, float, bool):
        return annotation.__name__
    if annotation is None or annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type_v1(args[0])
    if origin is Literal:
        return {"literal": [a.value if isinstance(a, enum.Enum) else a for a in args]}
    if origin in (list, set, frozenset) or annotation in (list, set, frozenset):
        return {"list": describe_type_v1(args[0]) if args else "any"}
    if origin is tuple:
        return {"tuple": [describe_type_v1(a) for a in args]}
    if origin is dict or annotation is dict:
        return {"dict": [describe_type_v1(a) for a in args] if args else ["any", "any"]}
    if origin in (typing.Union, types.UnionType):
        return {"union": [describe_type_v1(a) for a in args]}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return {"model": _class_path(annotation), "schema": model_schema(annotation)}
    if isinstance(annotation, type):
        return {"python": _class_path(annotation)}
    return {"python": repr(annotation)}


def upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    """The version 2 form of a version 1 artifact (a copy; `data` is left as read)."""
    upgraded = copy.deepcopy(data)
    upgraded["schema_version"] = 2
    predictors = upgraded.get("predictors")
    for state in predictors.values() if isinstance(predictors, dict) else ():
        signature = state.get("signature") if isinstance(state, dict) else None
        fields = signature.get("fields") if isinstance(signature, dict) else None
        for field in fields if isinstance(fields, list) else ():
            if isinstance(field, dict) and "type" in field:
                field["type"] = {"legacy_v1": field["type"]}
    return upgraded
