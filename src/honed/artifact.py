"""Compiled programs as plain JSON: `save`, `load`, `verify`. Never pickle, never code from the file.

DSPy's whole-program saving pickles the module (cloudpickle), which breaks when the code moves and runs
arbitrary code on load. An artifact instead records *what a compile changed* — each predictor's
instructions, field descriptions and demos — plus the registered name and JSON constructor arguments of
the program class. Loading builds the class with `cls(**init_args)` and writes those values back.

The class must be one the loader trusts: honed's own programs, a class given to `register_program`, or
one the caller names in `allow_classes`; anything else is refused. The file is only ever parsed as JSON.

    {"schema_version": 1,
     "program": {"class": "honed.programs.classify:Classify", "init_args": {...}},
     "predictors": {"predict": {"signature": {"instructions": "...", "fields": [
                                    {"name": "sentence", "role": "input", "type": "str", "desc": "..."}, ...]},
                                "demos": [{"sentence": "...", "sentiment": "positive"}],
                                "procedure": null}},
     "models": {"task": {"model": "gguf/smollm2-135m", "identity": "gguf:sha256:..."}},
     "provenance": {"honed": "0.1.0", "dspy": "3.4.1", "litellm": "...", "python": "...", "created_at": "..."},
     "content_hash": "sha256:<over the canonical JSON of everything else>"}

`procedure` is reserved for behavior programs: a predictor that has `dump_procedure() -> dict` and
`load_procedure(dict)` round-trips its procedure through it; every other predictor stores null.
`models` holds model strings, a GGUF file's content hash, and the host of `api_base` — never a key or token.
"""

from __future__ import annotations

import enum
import hashlib
import importlib
import inspect
import json
import os
import platform
import re
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dspy
import pydantic

from honed.errors import ArtifactError
from honed.programs.classify import Classify
from honed.programs.pipeline import MultipleChoice, ReasonThenAnswer
from honed.programs.transform import Transform
from honed.text import unpaired_surrogate

SCHEMA_VERSION = 1
_HASH_PREFIX = "sha256:"
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
# Key names whose values are credentials (`max_tokens`, `prompt_tokens` are not).
_SECRET_KEY = re.compile(r"api[_-]?key|(^|[_-])token$|secret|password|passwd|authorization|credential",
                         re.IGNORECASE)

_REGISTRY: dict[str, type[dspy.Module]] = {}


# ---------------------------------------------------------------------------------------------- registry


def class_path(cls: type) -> str:
    """The name an artifact records for a class: `module:QualName`."""
    return f"{cls.__module__}:{cls.__qualname__}"


def register_program(cls: type[dspy.Module]) -> type[dspy.Module]:
    """Trust `cls` when loading artifacts (usable as a decorator). Returns `cls` unchanged.

    Its constructor must take no arguments, or each instance must set `self.init_args` to the
    JSON-serializable keyword arguments that rebuild it.
    """
    if not (isinstance(cls, type) and issubclass(cls, dspy.Module)):
        raise ArtifactError(None, f"register_program expects a dspy.Module subclass, got {cls!r}")
    _REGISTRY[class_path(cls)] = cls
    return cls


def registered_programs() -> list[str]:
    return sorted(_REGISTRY)


register_program(Classify)
register_program(Transform)
register_program(ReasonThenAnswer)
register_program(MultipleChoice)


# ---------------------------------------------------------------------------------------------- types


def describe_type(annotation: Any) -> Any:
    """A JSON description of a field's type, compared on load to catch a program whose code changed."""
    if annotation in (str, int, float, bool):
        return annotation.__name__
    if annotation is None or annotation is type(None):
        return "null"
    if annotation is Any:
        return "any"
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(args[0])
    if origin is Literal:
        return {"literal": [a.value if isinstance(a, enum.Enum) else a for a in args]}
    if origin in (list, set, frozenset) or annotation in (list, set, frozenset):
        return {"list": describe_type(args[0]) if args else "any"}
    if origin is tuple:
        return {"tuple": [describe_type(a) for a in args]}
    if origin is dict or annotation is dict:
        return {"dict": [describe_type(a) for a in args] if args else ["any", "any"]}
    if origin in (typing.Union, types.UnionType):
        return {"union": [describe_type(a) for a in args]}
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        try:
            schema = annotation.model_json_schema()
        except (pydantic.PydanticInvalidForJsonSchema, pydantic.PydanticSchemaGenerationError, TypeError, ValueError):
            schema = None  # e.g. a model holding a callable: it can be saved; typed decoding refuses it later
        return {"model": class_path(annotation), "schema": schema}
    if isinstance(annotation, type):
        return {"python": class_path(annotation)}
    return {"python": repr(annotation)}


def _plain(value: Any, where: str, path: Any) -> Any:
    """`value` as plain JSON data (pydantic models dumped, Examples as dicts); an error names `where`."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ArtifactError(path, f"{where}: {value} cannot be stored in JSON")
        return value
    if isinstance(value, enum.Enum):
        return _plain(value.value, where, path)
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, dspy.Example):
        return _plain(dict(value.items()), where, path)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArtifactError(path, f"{where}: key {key!r} is not a string, so it cannot be stored in JSON")
            out[key] = _plain(item, f"{where}.{key}", path)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(item, f"{where}[{i}]", path) for i, item in enumerate(value)]
    raise ArtifactError(path, f"{where}: a {type(value).__name__} value cannot be stored in JSON; "
                              "use str, numbers, bools, lists, dicts or pydantic models")


# ---------------------------------------------------------------------------------------------- save


def content_hash(artifact: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON (sorted keys, compact) of everything except `content_hash`."""
    body = {key: value for key, value in artifact.items() if key != "content_hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    # surrogatepass: a file can hold a lone-surrogate escape; its hash must not crash (it never matches).
    return _HASH_PREFIX + hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


def _unpaired_surrogate(text: str) -> str | None:
    """Where `text` (an artifact's JSON) holds a lone surrogate: its escape and the text before it."""
    found = unpaired_surrogate(text)
    if found is None:
        return None
    start, escape = found
    before = text[max(0, start - 40):start].rsplit('"', 1)[-1]  # within the JSON string at fault
    return f"{escape} after {before!r}"


def program_hash(artifact: Mapping[str, Any]) -> str:
    """sha256 over what the program *is* (class, init args, predictors): equal for two compiles that
    produced the same program, whatever their provenance (times, paths) says."""
    body = {key: artifact[key] for key in ("program", "predictors")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _HASH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _init_args(program: dspy.Module, path: Any) -> dict[str, Any]:
    cls = type(program)
    args = getattr(program, "init_args", None)
    if args is None:
        try:
            params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        except (TypeError, ValueError):
            params = []
        required = [p.name for p in params if p.default is p.empty
                    and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if required:
            raise ArtifactError(path, f"{class_path(cls)} takes constructor arguments ({', '.join(required)}) but "
                                      "has no `init_args`; set `self.init_args = {...}` in __init__ to the "
                                      "JSON-serializable keyword arguments that rebuild it")
        return {}
    if not isinstance(args, Mapping):
        raise ArtifactError(path, f"{class_path(cls)}.init_args must be a dict of keyword arguments, "
                                  f"got {type(args).__name__}")
    return _plain(args, "init_args", path)


def _signature_state(signature: Any) -> dict[str, Any]:
    fields = []
    for name, field in signature.fields.items():
        role = "input" if name in signature.input_fields else "output"
        fields.append({"name": name, "role": role, "type": describe_type(field.annotation),
                       "desc": (field.json_schema_extra or {}).get("desc")})
    return {"instructions": signature.instructions, "fields": fields}


def _predictor_state(name: str, predictor: Any, path: Any) -> dict[str, Any]:
    if getattr(predictor, "fields", None):
        raise ArtifactError(path, f"predictor `{name}` carries DSPy decision-field overrides, which artifacts "
                                  "do not store yet")
    demos = []
    for index, demo in enumerate(predictor.demos or []):
        if not isinstance(demo, dspy.Example | Mapping):
            raise ArtifactError(path, f"predictor `{name}` demo {index} is a {type(demo).__name__}; "
                                      "demos must be dspy.Example or dict")
        demos.append(_plain(dict(demo.items()), f"predictor `{name}` demo {index}", path))
    procedure = None
    dump = getattr(predictor, "dump_procedure", None)
    if callable(dump):
        procedure = _plain(dump(), f"predictor `{name}` procedure", path)
    elif getattr(predictor, "procedure", None) is not None:
        raise ArtifactError(path, f"predictor `{name}` has a procedure but no dump_procedure() to save it with")
    # A behavior predictor (honed.Behave) stores its task signature; the procedure (and the step trace
    # field it implies) travels in `procedure` and is re-applied on load.
    signature = getattr(predictor, "task_signature", predictor.signature)
    return {"signature": _signature_state(signature), "demos": demos, "procedure": procedure}


def _api_base_host(url: Any) -> str | None:
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
        return f"{host}:{parts.port}" if host and parts.port else host
    except ValueError:
        return None


def _model_entry(lm: Any) -> dict[str, Any]:
    model = getattr(lm, "model", None)
    entry: dict[str, Any] = {"model": model if isinstance(model, str) else type(lm).__name__}
    kwargs = getattr(lm, "kwargs", None) or {}
    host = _api_base_host(kwargs.get("api_base") or kwargs.get("base_url") or "")
    if host:
        entry["api_base_host"] = host
    if isinstance(model, str):
        from honed.models.resolve import is_gguf_model

        if is_gguf_model(model):
            try:
                from honed.models.identity import model_identity

                entry["identity"] = model_identity(model)
            except Exception:  # the identity is provenance only; a missing file must not block a save
                pass
    return entry


def _configured_lms() -> dict[str, Any]:
    lms = {"task": dspy.settings.lm, "optimizer": dspy.settings.get("honed_optimizer_lm")}
    return {role: lm for role, lm in lms.items() if lm is not None}


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def _provenance(extra: Mapping[str, Any] | None, path: Any) -> dict[str, Any]:
    import honed

    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    auto = {"honed": honed.__version__, "dspy": getattr(dspy, "__version__", None) or version("dspy"),
            "litellm": version("litellm"), "python": platform.python_version(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    return {**auto, **_plain(_without_secrets(dict(extra or {})), "provenance", path)}


def _secrets_of(lm: Any) -> list[tuple[str, str]]:
    kwargs = getattr(lm, "kwargs", None) or {}
    return [(k, v) for k, v in kwargs.items() if _SECRET_KEY.search(k) and isinstance(v, str) and len(v) >= 4]


def save(program: dspy.Module, path: str | os.PathLike, *, provenance: Mapping[str, Any] | None = None
         ) -> dict[str, Any]:
    """Write `program` as a JSON artifact at `path`; returns the artifact as written.

    Records the program class and its `init_args`, each predictor's instructions, fields and demos, the
    configured model strings (no credentials) and `provenance` merged with library versions and the time.
    """
    if not isinstance(program, dspy.Module):
        raise ArtifactError(path, f"save expects a dspy.Module, got {type(program).__name__}")
    artifact: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "program": {"class": class_path(type(program)), "init_args": _init_args(program, path)},
        "predictors": {name: _predictor_state(name, predictor, path)
                       for name, predictor in program.named_predictors()},
        "models": {role: _model_entry(lm) for role, lm in _configured_lms().items()},
        "provenance": _provenance(provenance, path),
    }
    artifact["content_hash"] = content_hash(artifact)
    text = json.dumps(artifact, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    bad = _unpaired_surrogate(text)
    if bad:
        raise ArtifactError(path, f"refusing to write: the program holds an unpaired surrogate {bad}, which is not "
                                  "text; fix that string (characters outside the BMP need both halves of the pair)")
    for lm in _configured_lms().values():
        for key, secret in _secrets_of(lm):
            if secret in text:
                raise ArtifactError(path, f"refusing to write: the artifact would contain the configured {key}; "
                                          "remove it from the program's demos, instructions or init_args")
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, target)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ArtifactError(path, f"cannot be written: {exc.strerror or exc}") from None
    return artifact


# ---------------------------------------------------------------------------------------------- read


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)


class _FieldSpec(_Strict):
    name: str
    role: Literal["input", "output"]
    type: Any
    desc: str | None = None


class _SignatureSpec(_Strict):
    instructions: str
    fields: list[_FieldSpec]


class _PredictorSpec(_Strict):
    signature: _SignatureSpec
    demos: list[dict[str, Any]]
    procedure: dict[str, Any] | list[Any] | None


class _ProgramSpec(_Strict):
    class_name: str = pydantic.Field(alias="class")
    init_args: dict[str, Any]


class _ArtifactSpec(_Strict):
    schema_version: int
    program: _ProgramSpec
    predictors: dict[str, _PredictorSpec]
    models: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    content_hash: str


def _describe_validation_error(exc: pydantic.ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"missing key `{where}`"
    return f"`{where}`: {first['msg']}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which JSON artifacts never contain")


def _read(path: str | os.PathLike) -> tuple[dict[str, Any], _ArtifactSpec]:
    """Parse and check a file: JSON, schema version, required keys, content hash, structure."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ArtifactError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise ArtifactError(path, f"is not UTF-8 text (byte {exc.start}); not a honed artifact") from None
    except OSError as exc:
        raise ArtifactError(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise ArtifactError(path, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}): "
                                  "the file is truncated or not a honed artifact; save the program again") from None
    except (ValueError, RecursionError) as exc:
        raise ArtifactError(path, f"is not a honed artifact: {exc}") from None
    if not isinstance(data, dict):
        raise ArtifactError(path, "is not a honed artifact: expected a JSON object with schema_version, program "
                                  "and predictors")
    bad = _unpaired_surrogate(json.dumps(data, ensure_ascii=False))
    if bad:
        raise ArtifactError(path, f"holds an unpaired surrogate escape {bad}, which honed.save never writes: the file "
                                  "was edited or corrupted; save the program again")
    version = data.get("schema_version")
    if version is None:
        raise ArtifactError(path, "missing key `schema_version`: not a honed artifact")
    if version != SCHEMA_VERSION:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        hint = "it was written by a newer honed; upgrade honed" if newer else "save the program again"
        raise ArtifactError(path, f"unsupported schema_version {version!r} (this honed reads {SCHEMA_VERSION}); "
                                  f"{hint}")
    for key in ("program", "predictors", "content_hash"):
        if key not in data:
            raise ArtifactError(path, f"missing key `{key}`")
    expected = content_hash(data)
    if data["content_hash"] != expected:
        raise ArtifactError(path, "content hash does not match: the file was edited or corrupted after it was "
                                  "saved; restore the original or save the program again with honed.save")
    try:
        spec = _ArtifactSpec.model_validate(data)
    except pydantic.ValidationError as exc:
        raise ArtifactError(path, _describe_validation_error(exc)) from None
    return data, spec


def _resolve(name: str, allow_classes: Iterable[str | type], path: Any) -> type[dspy.Module]:
    """The class an artifact names: registered, or named by the caller. Never anything the file alone says."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    allowed: dict[str, type | None] = {}
    for entry in allow_classes:
        if isinstance(entry, type):
            allowed[class_path(entry)] = entry
        else:
            allowed[str(entry)] = None
    if name not in allowed:
        raise ArtifactError(path, f"unknown program class `{name}`: it is not registered (known: "
                                  f"{', '.join(registered_programs())}); if you trust it, call "
                                  f"honed.register_program(cls) or pass allow_classes=[{name!r}]")
    obj: Any = allowed[name]
    if obj is None:
        if not _CLASS_PATH.match(name):
            raise ArtifactError(path, f"`{name}` is not a `module:ClassName` path that can be imported")
        module_name, _, qualname = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            raise ArtifactError(path, f"cannot import module `{module_name}` for class `{name}`: {exc}") from None
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, dspy.Module)):
        raise ArtifactError(path, f"`{name}` is not a dspy.Module subclass; refusing to build it")
    return obj


def verify(path: str | os.PathLike, *, allow_classes: Iterable[str | type] = ()) -> dict[str, Any]:
    """Every check `load` makes short of building the program; returns the parsed artifact."""
    data, spec = _read(path)
    _resolve(spec.program.class_name, allow_classes, path)
    return data


# ---------------------------------------------------------------------------------------------- load


def _check_fields(predictor_name: str, signature: Any, stored: list[_FieldSpec], path: Any) -> None:
    current = {name: ("input" if name in signature.input_fields else "output",
                      json.loads(json.dumps(describe_type(field.annotation))))
               for name, field in signature.fields.items()}
    seen: set[str] = set()
    for field in stored:
        where = f"predictor `{predictor_name}` field `{field.name}`"
        if field.name in seen:
            raise ArtifactError(path, f"{where} is stored twice")
        seen.add(field.name)
        if field.name not in current:
            raise ArtifactError(path, f"{where} is not in the rebuilt program's signature (it has "
                                      f"{', '.join(current)}); the program's code changed since it was saved")
        role, declared = current[field.name]
        if role != field.role:
            raise ArtifactError(path, f"{where} is stored as an {field.role} but the rebuilt program declares an "
                                      f"{role}")
        if declared != field.type:
            raise ArtifactError(path, f"{where} is stored with type {json.dumps(field.type)} but the rebuilt "
                                      f"program declares {json.dumps(declared)}")
    for name in current:
        if name not in seen:
            raise ArtifactError(path, f"predictor `{predictor_name}` field `{name}` is in the rebuilt program's "
                                      "signature but not in the artifact; the program's code changed since it "
                                      "was saved")


def load(path: str | os.PathLike, *, allow_classes: Iterable[str | type] = ()) -> dspy.Module:
    """Rebuild the program saved at `path`: `cls(**init_args)`, then its instructions, descriptions and demos.

    The class must be registered (honed's programs, `register_program`) or named in `allow_classes`
    (`"module:ClassName"` strings or the classes themselves). The file is only parsed as JSON.
    """
    _, spec = _read(path)
    cls = _resolve(spec.program.class_name, allow_classes, path)
    try:
        program = cls(**spec.program.init_args)
    except Exception as exc:
        raise ArtifactError(path, f"cannot rebuild {spec.program.class_name} from its init_args: "
                                  f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    rebuilt = dict(program.named_predictors())
    for name in spec.predictors:
        if name not in rebuilt:
            raise ArtifactError(path, f"stores predictor `{name}`, but the rebuilt program has "
                                      f"{', '.join(f'`{n}`' for n in rebuilt) or 'none'}; the program's code "
                                      "changed since it was saved")
    for name in rebuilt:
        if name not in spec.predictors:
            raise ArtifactError(path, f"the rebuilt program has predictor `{name}`, which the artifact does not "
                                      "store; the program's code changed since it was saved")
    for name, state in spec.predictors.items():
        predictor = rebuilt[name]
        base = getattr(predictor, "task_signature", predictor.signature)
        _check_fields(name, base, state.signature.fields, path)
        signature = base.with_instructions(state.signature.instructions)
        for field in state.signature.fields:
            current = (signature.fields[field.name].json_schema_extra or {}).get("desc")
            if field.desc is not None and field.desc != current:
                signature = signature.with_updated_fields(field.name, desc=field.desc)
        inputs = list(signature.input_fields)
        demos = [dspy.Example(dict(demo)).with_inputs(*(k for k in inputs if k in demo)) for demo in state.demos]
        if state.procedure is not None:
            predictor = _behavior_predictor(program, name, predictor, signature, state.procedure, path)
        else:
            predictor.signature = signature
        predictor.demos = demos
    return program


def _behavior_predictor(program: dspy.Module, name: str, predictor: Any, signature: Any, procedure: Any,
                        path: Any) -> Any:
    """Re-apply a stored procedure: a `Behave` keeps its own, a plain `Predict` is replaced by a `Behave`
    over the same task signature (how a behavior compile left it)."""
    from honed.modules import Behave, Procedure
    from honed.optimizers.candidates import swap_predictor

    try:
        parsed = Procedure.model_validate(procedure)
    except pydantic.ValidationError as exc:
        raise ArtifactError(path, f"predictor `{name}` procedure is invalid: {_describe_validation_error(exc)}"
                            ) from None
    if isinstance(predictor, Behave):
        predictor.task_signature = signature
        predictor.set_procedure(parsed)
        return predictor
    if type(predictor) is not dspy.Predict:
        raise ArtifactError(path, f"predictor `{name}` stores a procedure, but its class "
                                  f"{type(predictor).__name__} cannot follow one")
    behave = Behave(signature, parsed)
    swap_predictor(program, name, behave)
    return behave
