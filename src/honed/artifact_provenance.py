"""What an artifact records about where it came from: model strings, library versions, time — no secrets.

`models` holds each configured model's string, a GGUF file's content hash and only the host of
`api_base`; provenance drops any key that names a credential. `secrets_of` lists the configured
credentials so that `save` can refuse a file that would contain one anyway (say, in a demo).
"""

from __future__ import annotations

import contextlib
import platform
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from importlib import metadata
from typing import Any
from urllib.parse import urlsplit

import dspy

from honed.artifact_json import plain
from honed.models.identity import model_identity
from honed.models.resolve import is_gguf_model
from honed.version import __version__

# Key names whose values are credentials (`max_tokens`, `prompt_tokens` are not).
_SECRET_KEY = re.compile(r"api[_-]?key|(^|[_-])token$|secret|password|passwd|authorization|credential",
                         re.IGNORECASE)


def _api_base_host(url: Any) -> str | None:
    try:
        parts = urlsplit(str(url))
        host = parts.hostname
        return f"{host}:{parts.port}" if host and parts.port else host
    except ValueError:
        return None


def model_entry(lm: Any) -> dict[str, Any]:
    """The model string (or class name), the `api_base` host without credentials, a GGUF file's identity."""
    model = getattr(lm, "model", None)
    entry: dict[str, Any] = {"model": model if isinstance(model, str) else type(lm).__name__}
    kwargs = getattr(lm, "kwargs", None) or {}
    host = _api_base_host(kwargs.get("api_base") or kwargs.get("base_url") or "")
    if host:
        entry["api_base_host"] = host
    if isinstance(model, str) and is_gguf_model(model):
        with contextlib.suppress(Exception):  # the identity is provenance only: a missing file must not block a save
            entry["identity"] = model_identity(model)
    return entry


def configured_lms() -> dict[str, Any]:
    """The task and optimizer LMs `honed.configure` set, by role."""
    lms = {"task": dspy.settings.lm, "optimizer": dspy.settings.get("honed_optimizer_lm")}
    return {role: lm for role, lm in lms.items() if lm is not None}


def _without_secrets(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _without_secrets(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list | tuple):
        return [_without_secrets(v) for v in value]
    return value


def provenance_of(extra: Mapping[str, Any] | None, path: Any) -> dict[str, Any]:
    """Library versions and the time, merged with the caller's `extra` minus any credential-named key."""
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    auto = {"honed": __version__, "dspy": getattr(dspy, "__version__", None) or version("dspy"),
            "litellm": version("litellm"), "python": platform.python_version(),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")}
    return {**auto, **plain(_without_secrets(dict(extra or {})), "provenance", path)}


def secrets_of(lm: Any) -> list[tuple[str, str]]:
    """The credential-named string settings of `lm` (name, value), for the save-time leak check."""
    kwargs = getattr(lm, "kwargs", None) or {}
    return [(k, v) for k, v in kwargs.items() if _SECRET_KEY.search(k) and isinstance(v, str) and len(v) >= 4]
