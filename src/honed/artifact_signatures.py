"""A predictor's signature as JSON, and back: rebuilt whole, or compared with and laid over the code's.

Two kinds of program need two uses of the same record:

- DSPy's own modules (`dspy.Predict("question -> answer")`, `dspy.ChainOfThought(MySignature)`) have no
  user code to rebuild from, so `rebuild_signature` makes the whole signature from the record: field
  names and roles in order, types (`artifact_types`), constraints, DSPy's `desc`/`prefix` and other
  `json_schema_extra` keys, the signature's class name and its instructions.
- A registered program's code builds its own signatures (with the user's real types); `check_fields`
  refuses a file whose fields no longer match that code, and `overlay` writes what a compile changes
  (instructions, descriptions, prefixes) onto it.

    {"name": "StringSignature", "instructions": "...",
     "fields": [{"name": "word", "role": "input", "type": "str", "desc": "${word}", "prefix": "Word:",
                 "extra": {"IS_TYPE_UNDEFINED": true}},
                {"name": "answer", "role": "output", "type": {"literal": ["yes", "no"]},
                 "constraints": [{"constraint": {"max_length": 3}}], "desc": "...", "prefix": "Answer:"}]}
"""

from __future__ import annotations

import json
import warnings
from typing import Annotated, Any, Literal

import dspy
import pydantic
from dspy.signatures.signature import make_signature

from honed.artifact_json import plain
from honed.artifact_legacy import describe_type_v1
from honed.artifact_models import TypeSpecError
from honed.artifact_types import decode_metadata, decode_type, encode_metadata, encode_type
from honed.errors import ArtifactError

_DSPY_KEYS = ("__dspy_field_type", "desc", "prefix")


class _Spec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)


class FieldSpec(_Spec):
    name: str
    role: Literal["input", "output"]
    type: Any
    desc: str | None = None
    prefix: str | None = None
    constraints: list[Any] | None = None
    extra: dict[str, Any] = {}
    description: str | None = None
    default: Any = None


class SignatureSpec(_Spec):
    name: str | None = None
    instructions: str
    fields: list[FieldSpec]


def _normal(value: Any) -> Any:
    """`value` as JSON would return it (tuples become lists), so stored and computed values compare equal."""
    return json.loads(json.dumps(value))


def signature_state(signature: type[dspy.Signature], where: str, path: Any) -> dict[str, Any]:
    """The JSON record of `signature`; `where` names the predictor in errors."""
    fields = []
    for name, field in signature.fields.items():
        extra = dict(field.json_schema_extra or {})
        try:
            entry: dict[str, Any] = {"name": name, "role": "input" if name in signature.input_fields else "output",
                                     "type": encode_type(field.annotation), "desc": extra.get("desc"),
                                     "prefix": extra.get("prefix")}
            if field.metadata:
                entry["constraints"] = encode_metadata(field.metadata)
        except TypeSpecError as exc:
            raise ArtifactError(path, f"{where} field `{name}`: {exc}") from None
        rest = {key: value for key, value in extra.items() if key not in _DSPY_KEYS}
        if rest:
            entry["extra"] = plain(rest, f"{where} field `{name}` json_schema_extra", path)
        if field.description is not None:
            entry["description"] = field.description
        if not field.is_required() and field.default_factory is None:
            entry["default"] = plain(field.default, f"{where} field `{name}` default", path)
        fields.append(entry)
    return {"name": signature.__name__, "instructions": signature.instructions, "fields": fields}


def rebuild_signature(spec: SignatureSpec, where: str, path: Any) -> type[dspy.Signature]:
    """The signature `spec` records, built from JSON alone; `ArtifactError` naming the field otherwise."""
    fields: dict[str, Any] = {}
    for field in spec.fields:
        at = f"{where} field `{field.name}`"
        if not field.name.isidentifier() or field.name.startswith("_"):
            raise ArtifactError(path, f"{at}: not a field name DSPy accepts")
        if field.name in fields:
            raise ArtifactError(path, f"{at} is stored twice")
        try:
            annotation = decode_type(field.type)
            metadata = decode_metadata(field.constraints)
        except TypeSpecError as exc:
            raise ArtifactError(path, f"{at} cannot be rebuilt: {exc}") from None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # A description no honed.save writes (the file was edited): refuse it, never crash the loader.
            raise ArtifactError(path, f"{at} cannot be rebuilt: malformed type description "
                                      f"({type(exc).__name__})") from None
        if metadata:
            annotation = Annotated[(annotation, *metadata)]
        extra: dict[str, Any] = {**field.extra, "__dspy_field_type": field.role}
        for key in ("desc", "prefix"):
            if getattr(field, key) is not None:
                extra[key] = getattr(field, key)
        options: dict[str, Any] = {"json_schema_extra": extra}
        if field.description is not None:
            options["description"] = field.description
        if "default" in field.model_fields_set:
            options["default"] = field.default
        fields[field.name] = (annotation, pydantic.Field(**options))
    name = spec.name if spec.name and spec.name.isidentifier() else "StringSignature"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DSPy's deprecation notes on `prefix`: the saved program had it too
            return make_signature(fields, spec.instructions, signature_name=name)
    except (TypeError, ValueError, pydantic.PydanticUserError, pydantic.PydanticSchemaGenerationError) as exc:
        raise ArtifactError(path, f"{where}: its signature cannot be rebuilt: {str(exc).splitlines()[0]}") from None


def _declared(field: Any, stored: FieldSpec) -> tuple[Any, Any]:
    """What the code declares for a field, described the way the file describes it."""
    if isinstance(stored.type, dict) and list(stored.type) == ["legacy_v1"]:
        return {"legacy_v1": _normal(describe_type_v1(field.annotation))}, stored.constraints
    return _normal(encode_type(field.annotation)), _normal(encode_metadata(field.metadata)) or None


def check_fields(where: str, signature: type[dspy.Signature], stored: list[FieldSpec], path: Any) -> None:
    """Refuse a file whose fields (names, roles, types) are not the ones the rebuilt program declares."""
    current = {name: ("input" if name in signature.input_fields else "output", field)
               for name, field in signature.fields.items()}
    seen: set[str] = set()
    for field in stored:
        at = f"{where} field `{field.name}`"
        if field.name in seen:
            raise ArtifactError(path, f"{at} is stored twice")
        seen.add(field.name)
        if field.name not in current:
            raise ArtifactError(path, f"{at} is not in the rebuilt program's signature (it has "
                                      f"{', '.join(current)}); the program's code changed since it was saved")
        role, declared_field = current[field.name]
        if role != field.role:
            raise ArtifactError(path, f"{at} is stored as an {field.role} but the rebuilt program declares an {role}")
        try:
            declared, constraints = _declared(declared_field, field)
        except TypeSpecError as exc:
            raise ArtifactError(path, f"{at}: {exc}") from None
        if declared != field.type:
            raise ArtifactError(path, f"{at} is stored with type {json.dumps(field.type)} but the rebuilt program "
                                      f"declares {json.dumps(declared)}; the program's code changed since it was "
                                      "saved")
        if constraints != field.constraints:
            raise ArtifactError(path, f"{at} is stored with constraints {json.dumps(field.constraints)} but the "
                                      f"rebuilt program declares {json.dumps(constraints)}")
    for name in current:
        if name not in seen:
            raise ArtifactError(path, f"{where} field `{name}` is in the rebuilt program's signature but not in "
                                      "the artifact; the program's code changed since it was saved")


def overlay(signature: type[dspy.Signature], stored: SignatureSpec) -> type[dspy.Signature]:
    """`signature` with the stored instructions, descriptions and prefixes: what a compile changes."""
    signature = signature.with_instructions(stored.instructions)
    for field in stored.fields:
        current = signature.fields[field.name].json_schema_extra or {}
        changes = {key: getattr(field, key) for key in ("desc", "prefix")
                   if getattr(field, key) is not None and getattr(field, key) != current.get(key)}
        if changes:
            signature = signature.with_updated_fields(field.name, **changes)
    return signature
