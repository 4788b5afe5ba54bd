"""What a model *is*, for cache keys: DSPy keys on the model string alone, which is not enough.

Two different files behind `gguf/model.gguf`, or two servers behind `openai/gpt-x` with different
`api_base`, must never share cache entries. For `gguf/` models the identity is the file's content
hash; for remote models it is the provider, the model name and the endpoint.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from honed.models.assemble import verified_sha256
from honed.models.resolve import is_gguf_model, resolve_gguf_path

_hash_lock = threading.Lock()
_hash_memo: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """Content hash of a file, memoized on (path, size, mtime) so each process hashes a model once.

    A file with a current verification stamp (an assembled bundled model, checked against its pinned
    hash when it was written) is not hashed at all: the stamp's hash is used, so a 1.1 GB model costs a
    stat and a small read per process instead of seconds of hashing.
    """
    stat = path.stat()
    memo_key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _hash_lock:
        if memo_key in _hash_memo:
            return _hash_memo[memo_key]
        stamped = verified_sha256(path)
        if stamped is not None:
            _hash_memo[memo_key] = stamped
            return stamped
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hash_memo[memo_key] = digest.hexdigest()
        return _hash_memo[memo_key]


def model_identity(model: str, api_base: str | None = None) -> str:
    """A string that differs whenever the model that answers differs."""
    if is_gguf_model(model):
        return f"gguf:sha256:{file_sha256(resolve_gguf_path(model))}"
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    endpoint = api_base or os.environ.get(f"{provider.upper()}_API_BASE") or "default"
    return f"remote:{model}@{endpoint.rstrip('/')}"


def public_endpoint(url: Any) -> str | None:
    """`url` as scheme://host:port/path: no credentials, query or fragment (it lands in files, logs, errors)."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return None
    if not parts.hostname:
        return None
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


def lm_identity(lm: Any) -> str | None:
    """What answers behind an LM (or a model string), safe to write into a run's settings.

    A `gguf/` model is its file's content hash; a remote one its model name and endpoint without
    credentials. None for an LM object without a model string.
    """
    model = lm if isinstance(lm, str) else getattr(lm, "model", None)
    if not isinstance(model, str):
        return None
    if is_gguf_model(model):
        return model_identity(model)
    kwargs = getattr(lm, "kwargs", None) or {}
    provider = model.split("/", 1)[0] if "/" in model else "openai"
    url = kwargs.get("api_base") or kwargs.get("base_url") or os.environ.get(f"{provider.upper()}_API_BASE")
    return f"remote:{model}@{public_endpoint(url) or 'default'}"
