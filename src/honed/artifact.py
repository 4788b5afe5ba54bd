"""Compiled programs as plain JSON: `save`, `load`, `verify`, `sign`. Never pickle, never code from the file.

DSPy's whole-program saving pickles the module (cloudpickle), which breaks when the code moves and runs
arbitrary code on load. An artifact instead records each predictor's signature (fields, types,
instructions), its demos and its procedure, plus the program's class and JSON constructor arguments:

    {"schema_version": 2,
     "program": {"class": "dspy.predict.chain_of_thought:ChainOfThought", "init_args": {"config": {}}},
     "predictors": {"predict": {"signature": {"name": "StringSignature", "instructions": "...", "fields": [
                                    {"name": "word", "role": "input", "type": "str", "desc": "${word}",
                                     "prefix": "Word:"}, ...]},
                                "demos": [{"word": "mouse", "reasoning": "...", "plural": "mice"}],
                                "procedure": null}},
     "models": {"task": {"model": "gguf/smollm2-135m", "identity": "gguf:sha256:..."}},
     "provenance": {"honed": "0.1.0", "dspy": "3.4.1", "litellm": "...", "python": "...", "created_at": "..."},
     "content_hash": "sha256:<over the canonical JSON of everything but the hash and the signature>",
     "signature": {"algorithm": "hmac-sha256", "key_id": "...", "value": "..."}}   (only when signed)

Which class rebuilds the program, and from what:

- `dspy.Predict`, `dspy.ChainOfThought` and `honed.Behave` (`artifact_modules.BUILTINS`) are rebuilt from
  the stored signature alone (`artifact_signatures`, `artifact_types`, `artifact_models`).
- Any other class must be trusted by the loader: honed's own programs, a class given to
  `register_program`, or one the caller names in `allow_classes`. It is built with `cls(**init_args)`;
  its code declares the signatures (checked against the file), and the file's instructions, field
  descriptions, prefixes, demos and procedures are written into its predictors (`artifact_predictors`).

The content hash proves the file is intact; a signature (`key=` or `$HONED_ARTIFACT_KEY`,
`artifact_signing`) proves who wrote it. Version 1 files are upgraded on read (`artifact_legacy`).
`models` holds model strings, a GGUF file's content hash, and the host of `api_base` — never a key or token.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dspy
import pydantic

from honed.artifact_json import canonical_bytes, plain
from honed.artifact_legacy import upgrade_v1
from honed.artifact_modules import BUILTINS, Builtin, builtin_for, predictor_slots
from honed.artifact_predictors import PredictorSpec, describe_validation_error, predictor_state, restore
from honed.artifact_provenance import configured_lms, model_entry, provenance_of, secrets_of
from honed.artifact_signatures import rebuild_signature
from honed.artifact_signing import KEY_ENV, ArtifactKey, check_signature, resolve_key
from honed.artifact_types import class_path
from honed.errors import ArtifactError
from honed.files import write_atomically
from honed.programs.classify import Classify
from honed.programs.pipeline import MultipleChoice, ReasonThenAnswer
from honed.programs.transform import Transform
from honed.text import unpaired_surrogate

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
_HASH_PREFIX = "sha256:"
_CLASS_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")

_REGISTRY: dict[str, type[dspy.Module]] = {}
Key = str | bytes | ArtifactKey | None  # a signing key, or None: `$HONED_ARTIFACT_KEY` when set

__all__ = ["KEY_ENV", "SCHEMA_VERSION", "class_path", "content_hash", "load", "program_hash", "register_program",
           "registered_programs", "save", "sign", "verify"]


# ---------------------------------------------------------------------------------------------- registry


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


# ---------------------------------------------------------------------------------------------- hashes


def content_hash(artifact: Mapping[str, Any]) -> str:
    """sha256 over the canonical JSON (sorted keys, compact) of everything but `content_hash` and `signature`."""
    return _HASH_PREFIX + hashlib.sha256(canonical_bytes(artifact)).hexdigest()


def program_hash(artifact: Mapping[str, Any]) -> str:
    """sha256 over what the program *is* (class, init args, predictors): equal for two compiles that
    produced the same program, whatever their provenance (times, paths) says."""
    body = {key: artifact[key] for key in ("program", "predictors")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return _HASH_PREFIX + hashlib.sha256(text.encode("utf-8")).hexdigest()


def _unpaired_surrogate(text: str) -> str | None:
    """Where `text` (an artifact's JSON) holds a lone surrogate: its escape and the text before it."""
    found = unpaired_surrogate(text)
    if found is None:
        return None
    start, escape = found
    before = text[max(0, start - 40):start].rsplit('"', 1)[-1]  # within the JSON string at fault
    return f"{escape} after {before!r}"


# ---------------------------------------------------------------------------------------------- save


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
        if required and cls.__module__.split(".")[0] == "dspy":
            raise ArtifactError(path, f"{class_path(cls)} cannot be saved on its own: artifacts rebuild "
                                      f"{', '.join(sorted(BUILTINS))} from JSON. Hold it in your own dspy.Module "
                                      "subclass and register that with honed.register_program, so your code "
                                      "rebuilds it and the artifact restores its prompts and demos")
        if required:
            raise ArtifactError(path, f"{class_path(cls)} takes constructor arguments ({', '.join(required)}) but "
                                      "has no `init_args`; set `self.init_args = {...}` in __init__ to the "
                                      "JSON-serializable keyword arguments that rebuild it")
        return {}
    if not isinstance(args, Mapping):
        raise ArtifactError(path, f"{class_path(cls)}.init_args must be a dict of keyword arguments, "
                                  f"got {type(args).__name__}")
    return plain(args, "init_args", path)


def _rebuilt_signatures(predictors: Mapping[str, PredictorSpec], path: Any) -> dict[str, type[dspy.Signature]]:
    return {name: rebuild_signature(state.signature, f"predictor `{name}`", path) for name, state in predictors.items()}


def _check_rebuildable(builtin: Builtin, predictors: Mapping[str, Any], path: Any) -> None:
    """Refuse at save time what `load` could not rebuild from JSON, instead of failing at deploy time."""
    specs = {name: PredictorSpec.model_validate(state) for name, state in predictors.items()}
    try:
        _rebuilt_signatures(specs, path)
    except ArtifactError as exc:
        raise ArtifactError(path, f"refusing to write: {exc.problem}. A {builtin.cls.__name__} is rebuilt from the "
                                  "file alone; hold it in your own dspy.Module subclass registered with "
                                  "honed.register_program, so your code declares that type") from None


def _write(path: str | os.PathLike, text: str) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text)
    except OSError as exc:
        raise ArtifactError(path, f"cannot be written: {exc.strerror or exc}") from None


def _text(artifact: Mapping[str, Any], key: ArtifactKey | None, path: Any) -> str:
    """The file's text, refused when it would hold a lone surrogate, a configured credential or the key."""
    text = json.dumps(artifact, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    bad = _unpaired_surrogate(text)
    if bad:
        raise ArtifactError(path, f"refusing to write: the program holds an unpaired surrogate {bad}, which is not "
                                  "text; fix that string (characters outside the BMP need both halves of the pair)")
    for lm in configured_lms().values():
        for name, secret in secrets_of(lm):
            if secret in text:
                raise ArtifactError(path, f"refusing to write: the artifact would contain the configured {name}; "
                                          "remove it from the program's demos, instructions or init_args")
    if key is not None and key.secret.decode("utf-8", errors="replace") in text:
        raise ArtifactError(path, f"refusing to write: the artifact would contain the signing key ({key.source}); "
                                  "remove it from the program's demos, instructions or init_args")
    return text


def save(program: dspy.Module, path: str | os.PathLike, *, provenance: Mapping[str, Any] | None = None,
         key: Key = None) -> dict[str, Any]:
    """Write `program` as a JSON artifact at `path`; returns the artifact as written.

    Records the program class and its `init_args`, each predictor's signature, demos and procedure, the
    configured model strings (no credentials) and `provenance` merged with library versions and the time.
    With `key` (or `$HONED_ARTIFACT_KEY` set) the file also carries an HMAC-SHA256 signature; the key
    itself is never written.
    """
    if not isinstance(program, dspy.Module):
        raise ArtifactError(path, f"save expects a dspy.Module, got {type(program).__name__}")
    signing_key = resolve_key(key, path)
    builtin = builtin_for(program)
    artifact: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "program": {"class": class_path(type(program)),
                    "init_args": builtin.init_args(program, path) if builtin else _init_args(program, path)},
        "predictors": {slot.name: predictor_state(slot.name, slot.predictor, path)
                       for slot in predictor_slots(program)},
        "models": {role: model_entry(lm) for role, lm in configured_lms().items()},
        "provenance": provenance_of(provenance, path),
    }
    if builtin is not None:
        _check_rebuildable(builtin, artifact["predictors"], path)
    artifact["content_hash"] = content_hash(artifact)
    if signing_key is not None:
        artifact["signature"] = signing_key.sign(artifact)
    _write(path, _text(artifact, signing_key, path))
    return artifact


# ---------------------------------------------------------------------------------------------- read


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore", populate_by_name=True)


class _ProgramSpec(_Strict):
    class_name: str = pydantic.Field(alias="class")
    init_args: dict[str, Any]


class _ArtifactSpec(_Strict):
    schema_version: int
    program: _ProgramSpec
    predictors: dict[str, PredictorSpec]
    models: dict[str, Any] = {}
    provenance: dict[str, Any] = {}
    content_hash: str
    signature: dict[str, Any] | None = None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}, which JSON artifacts never contain")


def _parse(path: str | os.PathLike) -> dict[str, Any]:
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
    return data


def _read(path: str | os.PathLike, key: ArtifactKey | None) -> tuple[dict[str, Any], _ArtifactSpec, int]:
    """Parse and check a file: JSON, schema version, required keys, content hash, signature, structure.

    Returns the data as read, its structure in the current version's shape, and the version read."""
    data = _parse(path)
    bad = _unpaired_surrogate(json.dumps(data, ensure_ascii=False))
    if bad:
        raise ArtifactError(path, f"holds an unpaired surrogate escape {bad}, which honed.save never writes: the file "
                                  "was edited or corrupted; save the program again")
    version = data.get("schema_version")
    if version is None:
        raise ArtifactError(path, "missing key `schema_version`: not a honed artifact")
    if isinstance(version, bool) or version not in READABLE_VERSIONS:
        newer = isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION
        hint = "it was written by a newer honed; upgrade honed" if newer else "save the program again"
        raise ArtifactError(path, f"unsupported schema_version {version!r} (this honed reads "
                                  f"{' and '.join(map(str, READABLE_VERSIONS))}); {hint}")
    for name in ("program", "predictors", "content_hash"):
        if name not in data:
            raise ArtifactError(path, f"missing key `{name}`")
    if data["content_hash"] != content_hash(data):
        raise ArtifactError(path, "content hash does not match: the file was edited or corrupted after it was "
                                  "saved; restore the original or save the program again with honed.save")
    if key is not None:
        check_signature(data, key, path)
    try:
        spec = _ArtifactSpec.model_validate(upgrade_v1(data) if version == 1 else data)
    except pydantic.ValidationError as exc:
        raise ArtifactError(path, describe_validation_error(exc)) from None
    return data, spec, version


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
        short = name.rpartition(":")[2] or name
        raise ArtifactError(path, f"unknown program class `{name}`: it is not registered (known: "
                                  f"{', '.join(registered_programs() + sorted(BUILTINS))}). If you trust it, "
                                  f"import it and call honed.register_program({short}) before loading (or decorate "
                                  f"the class with @honed.register_program), or pass allow_classes=[{name!r}] "
                                  f"(on the command line: --allow-class {name})")
    obj: Any = allowed[name]
    if obj is None:
        if not _CLASS_PATH.match(name):
            raise ArtifactError(path, f"`{name}` is not a `module:ClassName` path that can be imported")
        module_name, _, qualname = name.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as exc:
            hint = ""
            if isinstance(exc, ModuleNotFoundError) and exc.name and (
                    module_name == exc.name or module_name.startswith(exc.name + ".")):
                # `honed run` is a console script: unlike `python -m`, it does not put the working directory on
                # sys.path, so a module file beside the user is not found unless its folder is named
                top = exc.name.partition(".")[0]
                hint = (f"; put the folder that holds `{top}.py` (or the `{top}` package) on PYTHONPATH, e.g. "
                        f"`PYTHONPATH=. honed run ...` from that folder, or install the package")
            raise ArtifactError(path, f"cannot import module `{module_name}` for class `{name}`: {exc}{hint}"
                                ) from None
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
    if not (isinstance(obj, type) and issubclass(obj, dspy.Module)):
        raise ArtifactError(path, f"`{name}` is not a dspy.Module subclass; refusing to build it")
    return obj


def verify(path: str | os.PathLike, *, allow_classes: Iterable[str | type] = (), key: Key = None) -> dict[str, Any]:
    """Every check `load` makes short of building the program; returns the artifact as read.

    With `key` (or `$HONED_ARTIFACT_KEY` set), an unsigned or wrongly signed file is refused; without
    one, a signature is not checked."""
    data, spec, version = _read(path, resolve_key(key, path))
    if spec.program.class_name in BUILTINS and version >= 2:
        _build(spec, version, allow_classes, path)  # DSPy's own module from data: no user code runs
    else:
        _resolve(spec.program.class_name, allow_classes, path)
    return data


# ---------------------------------------------------------------------------------------------- load


def _build(spec: _ArtifactSpec, version: int, allow_classes: Iterable[str | type], path: Any
           ) -> tuple[dspy.Module, bool]:
    """The program before its predictors are restored, and whether its signatures came from the file."""
    builtin = BUILTINS.get(spec.program.class_name)
    if builtin is not None and version >= 2:
        signatures = _rebuilt_signatures(spec.predictors, path)
        return builtin.build(spec.program.init_args, signatures, path), True
    cls = _resolve(spec.program.class_name, allow_classes, path)
    try:
        return cls(**spec.program.init_args), False
    except Exception as exc:
        raise ArtifactError(path, f"cannot rebuild {spec.program.class_name} from its init_args: "
                                  f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc


def load(path: str | os.PathLike, *, allow_classes: Iterable[str | type] = (), key: Key = None) -> dspy.Module:
    """Rebuild the program saved at `path`, with its instructions, fields, demos and procedures.

    `dspy.Predict`, `dspy.ChainOfThought` and `honed.Behave` programs are rebuilt from the file alone. Any
    other class must be registered (honed's programs, `register_program`) or named in `allow_classes`
    (`"module:ClassName"` strings or the classes themselves). With `key` (or `$HONED_ARTIFACT_KEY` set) an
    unsigned or wrongly signed file is refused. The file is only parsed as JSON.
    """
    _, spec, version = _read(path, resolve_key(key, path))
    program, rebuilt = _build(spec, version, allow_classes, path)
    slots = {slot.name: slot for slot in predictor_slots(program)}
    for name in spec.predictors:
        if name not in slots:
            raise ArtifactError(path, f"stores predictor `{name}`, but the rebuilt program has "
                                      f"{', '.join(f'`{n}`' for n in slots) or 'none'}; the program's code "
                                      "changed since it was saved")
    for name in slots:
        if name not in spec.predictors:
            raise ArtifactError(path, f"the rebuilt program has predictor `{name}`, which the artifact does not "
                                      "store; the program's code changed since it was saved")
    for name, state in spec.predictors.items():
        program = restore(program, slots[name], state, rebuilt=rebuilt, path=path)
    return program


# ---------------------------------------------------------------------------------------------- sign


def sign(path: str | os.PathLike, *, key: Key = None) -> dict[str, Any]:
    """Add (or replace) the HMAC signature of the artifact at `path`, in place; returns it as written.

    Signing vouches for the file: sign only one you produced or checked. The content hash must match
    (an edited file is refused) and the file must be schema_version 2 (load and save an older one)."""
    signing_key = resolve_key(key, path)
    if signing_key is None:
        raise ArtifactError(path, f"no key to sign with: pass key=... or set ${KEY_ENV}")
    data, _, version = _read(path, None)
    if version != SCHEMA_VERSION:
        raise ArtifactError(path, f"is schema_version {version}; re-save it to sign it: "
                                  "honed.save(honed.load(path), path, key=...)")
    data["signature"] = signing_key.sign(data)
    _write(path, _text(data, signing_key, path))
    return data

