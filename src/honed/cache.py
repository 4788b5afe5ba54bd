"""DSPy's two-level (memory + diskcache) response cache, keyed on what the model *is*.

DSPy keys a response on the request with `api_base` removed and the model reduced to its string, so
a different GGUF file under the same name, or another server behind the same model string, would be
served stale answers. `HonedCache` adds the model's identity (file hash or endpoint) to every key and
counts hits and misses per model, and the tokens of every answer it stores or serves. It is the only
place honed changes DSPy's caching.

A cache must never be the reason a run fails. DSPy's own cache crashes on a corrupt sqlite file
(DSPy #8600) or a read-only directory (#8717), and silently drops disk write errors at debug level.
`HonedCache.open` instead falls back to memory only with a `CacheFallbackWarning` naming the directory
and what to do, and a disk that fails mid-run (disk full, database damaged) is dropped the same way,
once, while memory keeps serving every answer the process has seen.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dspy
from dspy.clients.cache import Cache

from honed.models.identity import model_identity

logger = logging.getLogger(__name__)

DEFAULT_DISK_LIMIT = 30 * 1024**3
# DSPy's default bound on the in-memory LRU tier (entries, not bytes); the disk tier holds everything.
DEFAULT_MEMORY_ENTRIES = 1_000_000
# What diskcache raises when its directory or database cannot be used: sqlite3.DatabaseError for a
# corrupt file, OperationalError for a read-only or full disk, OSError for a missing or unwritable path.
DISK_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, OSError)
# Never part of a key: credentials must not shape (or be recoverable from) keys, and the endpoint is
# already inside the model identity.
ALWAYS_IGNORED = ("api_key", "api_base", "base_url")


class CacheFallbackWarning(RuntimeWarning):
    """The on-disk cache could not be used; responses are kept in memory only for this process."""


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
                 disk_size_limit_bytes: int = DEFAULT_DISK_LIMIT,
                 memory_max_entries: int = DEFAULT_MEMORY_ENTRIES) -> None:
        super().__init__(
            enable_disk_cache=disk,
            enable_memory_cache=memory,
            disk_cache_dir=str(directory) if directory is not None else None,
            disk_size_limit_bytes=disk_size_limit_bytes,
            memory_max_entries=memory_max_entries,
        )
        self.directory = Path(directory) if directory is not None else None
        self.disk_error: str | None = None  # why the disk tier was dropped, if it was
        self._counts_lock = threading.Lock()
        self._counts: dict[str, CacheCounts] = {}
        self._tokens = 0
        if disk:
            self.disk_cache = _GuardedDisk(self.disk_cache, self)

    @classmethod
    def open(cls, directory: str | Path, **options: Any) -> HonedCache:
        """The on-disk cache in `directory`, or, when it cannot be used, a memory-only cache and a warning.

        The fallback keeps `directory` (so configuring the same directory again reuses it without a
        second warning) but writes nothing; `on_disk` is False and `disk_error` says why.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return cls(directory, **options)
        except DISK_ERRORS as exc:
            fallback = cls(directory, disk=False, **options)
            fallback._drop_disk(exc, "cannot be opened")
            return fallback

    @property
    def on_disk(self) -> bool:
        """Whether answers are still being written to (and read from) the directory."""
        return bool(self.enable_disk_cache)

    def _drop_disk(self, exc: BaseException, doing: str) -> None:
        """Stop using the disk tier (once per cache) and say so, naming the directory and the way out."""
        with self._counts_lock:
            first = self.disk_error is None
            if first:
                self.disk_error = f"{type(exc).__name__}: {exc}"
            self.enable_disk_cache = False
        if not first:
            logger.debug("cache directory %s: further disk error ignored: %s", self.directory, exc)
            return
        warnings.warn(
            f"honed cache directory {self.directory} {doing} ({type(exc).__name__}: {exc}); responses are kept "
            "in memory only for the rest of this process, so nothing new is saved for later runs. Fix its "
            "permissions or free disk space, delete the directory to start a fresh cache, or pass another "
            "cache_dir (or set $HONED_CACHE_DIR).",
            CacheFallbackWarning, stacklevel=3)

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


class _GuardedDisk:
    """diskcache's FanoutCache, with the errors of a damaged or unwritable disk turned into a fallback.

    DSPy's `Cache` reads through `get`, writes through `set` and drops entries through `delete`; the
    first `DISK_ERRORS` failure turns the owner's disk tier off (with one warning) and the call then
    behaves as a miss (or a write to memory only), so the run goes on.
    """

    def __init__(self, disk: Any, owner: HonedCache) -> None:
        self.disk = disk
        self.owner = owner

    def _guarded(self, doing: str, fallback: Any, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """`call(*args, **kwargs)`, or `fallback` once a disk error has turned the disk tier off."""
        try:
            return call(*args, **kwargs)
        except DISK_ERRORS as exc:
            self.owner._drop_disk(exc, doing)
            return fallback

    def get(self, key: str, default: Any = None) -> Any:
        return self._guarded("could not be read", default, self.disk.get, key, default)

    def set(self, key: str, value: Any, *args: Any, **kwargs: Any) -> bool:
        return self._guarded("could not be written", False, self.disk.set, key, value, *args, **kwargs)

    def delete(self, key: str) -> bool:
        return self._guarded("could not be written", False, self.disk.delete, key)

    def __contains__(self, key: str) -> bool:
        return self._guarded("could not be read", False, self.disk.__contains__, key)

    def __getattr__(self, name: str) -> Any:  # close(), volume(), directory, ...: the real cache's
        return getattr(self.disk, name)
