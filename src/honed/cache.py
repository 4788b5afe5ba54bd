"""DSPy's two-level (memory + diskcache) response cache, keyed on what the model *is*.

DSPy keys a response on the request with `api_base` removed and the model reduced to its string, so
a different GGUF file under the same name, or another server behind the same model string, would be
served stale answers. `HonedCache` adds the model's identity (file hash or endpoint) to every key and
counts hits and misses per model, and the tokens of every answer it stores or serves. It is the only
place honed changes DSPy's caching.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.cache import Cache

from honed.models.identity import model_identity

DEFAULT_DISK_LIMIT = 30 * 1024**3
# Never part of a key: credentials must not shape (or be recoverable from) keys, and the endpoint is
# already inside the model identity.
ALWAYS_IGNORED = ("api_key", "api_base", "base_url")


@dataclass
class CacheCounts:
    hits: int = 0
    misses: int = 0


def usage_tokens(value: Any) -> int:
    """Prompt + completion tokens of a response (litellm's `usage` or DSPy's lm15 `Usage`), 0 if unknown."""
    usage = value.get("usage") if isinstance(value, dict) else getattr(value, "usage", None)
    if not usage:
        return 0

    def read(name: str) -> int:
        found = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        return int(found or 0)

    return (read("total_tokens") or read("prompt_tokens") + read("completion_tokens")
            or read("input_tokens") + read("output_tokens"))


def _request_model(request: dict[str, Any]) -> tuple[str | None, str | None]:
    """The model string and endpoint of a cache request (legacy dict or DSPy's typed Request form)."""
    inner = request.get("request")
    if isinstance(inner, dict) and "model" in inner:
        return inner.get("model"), None
    return request.get("model"), request.get("api_base") or request.get("base_url")


class HonedCache(Cache):
    """A `dspy.clients.cache.Cache` whose keys include the model identity, with hit/miss counts."""

    def __init__(self, directory: str | Path | None, *, disk: bool = True, memory: bool = True,
                 disk_size_limit_bytes: int = DEFAULT_DISK_LIMIT) -> None:
        super().__init__(
            enable_disk_cache=disk,
            enable_memory_cache=memory,
            disk_cache_dir=str(directory) if directory is not None else None,
            disk_size_limit_bytes=disk_size_limit_bytes,
        )
        self.directory = Path(directory) if directory is not None else None
        self._counts_lock = threading.Lock()
        self._counts: dict[str, CacheCounts] = {}
        self._tokens = 0

    def cache_key(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> str:
        model, endpoint = _request_model(request)
        keyed = dict(request)
        if isinstance(model, str):
            keyed["_honed_model_identity"] = model_identity(model, endpoint)
        ignored = list(dict.fromkeys([*(ignored_args_for_cache_key or []), *ALWAYS_IGNORED]))
        return super().cache_key(keyed, ignored)

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        result = super().get(request, ignored_args_for_cache_key)
        budget = dspy.settings.get("honed_budget")
        if budget is not None:  # a compile is counting requests; it may refuse this one
            budget.observe(self.cache_key(request, ignored_args_for_cache_key), hit=result is not None,
                           cost=max(1, int(request.get("n") or 1)))
        model, _ = _request_model(request)
        with self._counts_lock:
            counts = self._counts.setdefault(str(model), CacheCounts())
            if result is None:
                counts.misses += 1
            else:
                counts.hits += 1
        return result

    def put(self, request: dict[str, Any], value: Any, ignored_args_for_cache_key: list[str] | None = None,
            enable_memory_cache: bool = True) -> None:
        self._add_tokens(value)
        super().put(request, value, ignored_args_for_cache_key, enable_memory_cache)

    def _prepare_cached_response(self, response: Any) -> Any:
        # DSPy clears `usage` on the copy it serves from the cache; read the stored usage first so that a
        # warm rerun reports the same token count as the cold run that paid for it.
        self._add_tokens(response)
        return super()._prepare_cached_response(response)

    def _add_tokens(self, value: Any) -> None:
        tokens = usage_tokens(value)
        with self._counts_lock:
            self._tokens += tokens

    def tokens(self) -> int:
        """Tokens (prompt + completion) of every answer stored or served so far, all models."""
        with self._counts_lock:
            return self._tokens

    def counts(self, model: str | None = None) -> CacheCounts:
        """Hits and misses so far, for one model string or summed over all."""
        with self._counts_lock:
            if model is not None:
                found = self._counts.get(model, CacheCounts())
                return CacheCounts(found.hits, found.misses)
            return CacheCounts(sum(c.hits for c in self._counts.values()),
                               sum(c.misses for c in self._counts.values()))
