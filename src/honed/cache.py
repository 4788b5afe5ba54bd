"""DSPy's two-level (memory + diskcache) response cache, keyed on what the model *is*.

DSPy keys a response on the request with `api_base` removed and the model reduced to its string, so
a different GGUF file under the same name, or another server behind the same model string, would be
served stale answers. `HonedCache` adds the model's identity (file hash or endpoint) to every key and
counts hits and misses per model, and the tokens of every answer it stores or serves. It is the only
place honed changes DSPy's caching, and it only caches: the compile's call budget is charged before
the cache is asked, at the model-call boundary (`honed.models.budgeted`), so an LM that does not cache
is charged the same.

A cache must never be the reason a run fails, nor a reason to pay again for an answer it holds.
DSPy's own cache crashes on a corrupt sqlite file (DSPy #8600) or a read-only directory (#8717), and
silently drops disk write errors at debug level. `HonedCache.open` instead:

- serves a directory it cannot write **read-only**: every answer stored there is still a hit, new
  answers are kept in memory only, and one `CacheFallbackWarning` names the directory and the fix
  (diskcache cannot open a cache it may not write, so honed reads the shards itself: `_ReadOnlyDisk`);
- falls back to memory only, with the same warning, when the directory cannot be read at all.

A disk that fails mid-run is handled the same way, once: a failed write (disk full, permissions
changed) turns the cache read-only, a failed read (database damaged) drops the disk tier, while
memory keeps serving every answer the process has seen.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    """The on-disk cache cannot be written (or read); new responses are kept in memory only for this process."""


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
        self.disk_error: str | None = None  # why the disk stopped being written (or read), if it did
        self.read_only = False  # the directory still answers, but nothing new is written to it
        self._counts_lock = threading.Lock()
        self._counts: dict[str, CacheCounts] = {}
        self._tokens = 0
        if disk:
            self.disk_cache = _GuardedDisk(self.disk_cache, self)

    @classmethod
    def open(cls, directory: str | Path, **options: Any) -> HonedCache:
        """The on-disk cache in `directory`; read-only when it cannot be written; else memory only.

        Either fallback warns once and keeps `directory` (so configuring the same directory again
        reuses it without a second warning); `on_disk` is then False and `disk_error` says why.
        """
        directory = Path(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            return cls(directory, **options)
        except DISK_ERRORS as exc:
            fallback = cls(directory, disk=False, **options)
            try:
                reader = _ReadOnlyDisk(directory)
            except DISK_ERRORS:  # nothing readable there either (missing, damaged, not a cache)
                fallback._drop_disk(exc, "cannot be opened")
                return fallback
            fallback.disk_cache = _GuardedDisk(reader, fallback)
            fallback.enable_disk_cache = True
            fallback._stop_writing(exc, "cannot be written", stored=len(reader))
            return fallback

    @property
    def on_disk(self) -> bool:
        """Whether new answers are still being saved in the directory (False: read-only or memory only)."""
        return bool(self.enable_disk_cache) and not self.read_only

    def _stop_writing(self, exc: BaseException, doing: str, stored: int | None = None) -> None:
        """Keep reading the directory but write nothing more to it (once per cache), and say so."""
        with self._counts_lock:
            first = not self.read_only and bool(self.enable_disk_cache)
            self.read_only = True
            self.disk_error = self.disk_error or f"{type(exc).__name__}: {exc}"
        if not first:
            logger.debug("cache directory %s: further write error ignored: %s", self.directory, exc)
            return
        held = f"its {stored} stored answers" if stored is not None else "the answers it holds"
        warnings.warn(
            f"honed cache directory {self.directory} {doing} ({type(exc).__name__}: {exc}); {held} are still "
            "served, but new answers are kept in memory only for the rest of this process, so they are not "
            f"saved for later runs. Make it writable (chmod -R u+w {self.directory}) or free disk space, "
            "or pass another cache_dir (or set $HONED_CACHE_DIR).",
            CacheFallbackWarning, stacklevel=3)

    def _drop_disk(self, exc: BaseException, doing: str) -> None:
        """Stop using the disk tier (once per cache) and say so, naming the directory and the way out."""
        with self._counts_lock:
            first = bool(self.enable_disk_cache) or self.disk_error is None
            self.disk_error = self.disk_error or f"{type(exc).__name__}: {exc}"
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

    def __contains__(self, key: str) -> bool:
        """Whether `get` would find `key`, without reading the entry or counting a hit or miss.

        DSPy's version also looks in a disk tier that has been turned off; the budget asks this before
        each request, to know whether a repeat will be answered from the cache (and so is free).
        """
        if self.enable_memory_cache:
            with self._lock:
                if key in self.memory_cache:
                    return True
        return bool(self.enable_disk_cache) and key in self.disk_cache

    def get(self, request: dict[str, Any], ignored_args_for_cache_key: list[str] | None = None) -> Any:
        result = super().get(request, ignored_args_for_cache_key)
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
    """diskcache's FanoutCache (or `_ReadOnlyDisk`), with a damaged or unwritable disk turned into a fallback.

    DSPy's `Cache` reads through `get`, writes through `set` and drops entries through `delete`. The
    first `DISK_ERRORS` failure of a write turns the owner read-only (with one warning), and the
    first failure of a read turns its disk tier off; the call then behaves as a miss (or a write to
    memory only), so the run goes on. A read-only owner's writes never reach the disk.
    """

    def __init__(self, disk: Any, owner: HonedCache) -> None:
        self.disk = disk
        self.owner = owner

    def _read(self, fallback: Any, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except DISK_ERRORS as exc:
            self.owner._drop_disk(exc, "could not be read")
            return fallback

    def _write(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        if self.owner.read_only:
            return False
        try:
            return call(*args, **kwargs)
        except DISK_ERRORS as exc:
            self.owner._stop_writing(exc, "could not be written")
            return False

    def get(self, key: str, default: Any = None) -> Any:
        return self._read(default, self.disk.get, key, default)

    def set(self, key: str, value: Any, *args: Any, **kwargs: Any) -> bool:
        return self._write(self.disk.set, key, value, *args, **kwargs)

    def delete(self, key: str) -> bool:
        return self._write(self.disk.delete, key)

    def __contains__(self, key: str) -> bool:
        return self._read(False, self.disk.__contains__, key)

    def __getattr__(self, name: str) -> Any:  # close(), volume(), directory, ...: the real cache's
        return getattr(self.disk, name)


class _ReadOnlyDisk:
    """The entries of a diskcache `FanoutCache` directory, read without writing a byte.

    diskcache cannot open a cache it may not write: `Cache.__init__` first writes its settings table
    and pragmas, which fails on a read-only directory or file (DSPy #8717). So honed reads the shards
    itself, exactly as `FanoutCache.get` finds an entry: the shard is `Disk.hash(key)` modulo the
    number of shards (the `000`, `001`, ... folders), and the row is looked up with the query of
    diskcache's fast path (`Cache.get` without statistics or an eviction update, which is how DSPy
    configures it), then decoded by diskcache's `Disk.fetch`. Values are read with diskcache's default
    `Disk`, which is what `HonedCache` writes with.

    Each shard is opened read-only (`mode=ro`), which keeps SQLite's locking in case another process
    still writes there. SQLite cannot open a WAL database (diskcache's journal mode) that way when it
    may not create the `-shm` file beside it, so a shard that refuses so is opened `immutable=1`
    instead: read without locks, as a file nobody changes. That is what a directory this process may
    not write is to it; should another user still write there, its newest entries are missed, and a
    torn read fails as a read error, which drops the disk tier.
    Opening probes every shard (the entry count diskcache keeps), so a damaged one fails here, not
    mid-run.
    """

    _SELECT = ("SELECT mode, filename, value FROM Cache WHERE key = ? AND raw = ?"
               " AND (expire_time IS NULL OR expire_time > ?)")

    def __init__(self, directory: Path) -> None:
        from diskcache import Disk

        self.directory = directory
        shards = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
        if not shards or [int(p.name) for p in shards] != list(range(len(shards))):
            raise FileNotFoundError(f"no diskcache shards (000, 001, ...) in {directory}")
        self._databases = [shard / "cache.db" for shard in shards]
        self._disks = [Disk(str(shard)) for shard in shards]
        self._lock = threading.Lock()
        self._local = threading.local()
        self._open: list[sqlite3.Connection] = []
        self._count = sum(self._stored(index) for index in range(len(shards)))

    def _connection(self, index: int) -> sqlite3.Connection | None:
        """This thread's read-only connection to shard `index` (None: the shard holds no database)."""
        connections: dict[int, sqlite3.Connection | None] | None = getattr(self._local, "connections", None)
        if connections is None:
            connections = self._local.connections = {}
        if index not in connections:
            database = self._databases[index]
            connection = None
            if database.is_file():
                for flags in ("mode=ro", "immutable=1"):
                    candidate = sqlite3.connect(f"{database.as_uri()}?{flags}", uri=True, timeout=10,
                                                check_same_thread=False)
                    try:
                        candidate.execute("SELECT value FROM Settings WHERE key = 'count'").fetchall()
                    except sqlite3.OperationalError as exc:
                        candidate.close()
                        # Only the read-only refusal moves on to `immutable`: a locked database has a
                        # writer, and must not be read without locks.
                        if flags == "immutable=1" or "locked" in str(exc):
                            raise
                        continue
                    except BaseException:
                        candidate.close()
                        raise
                    connection = candidate
                    break
                with self._lock:
                    self._open.append(connection)
            connections[index] = connection
        return connections[index]

    def _stored(self, index: int) -> int:
        connection = self._connection(index)
        if connection is None:
            return 0
        rows = connection.execute("SELECT value FROM Settings WHERE key = 'count'").fetchall()
        return int(rows[0][0]) if rows else 0

    def __len__(self) -> int:
        """Entries stored when the directory was opened (diskcache's own count)."""
        return self._count

    def _row(self, key: str) -> tuple[int, Any] | None:
        index = self._disks[0].hash(key) % len(self._disks)
        connection = self._connection(index)
        if connection is None:
            return None
        db_key, raw = self._disks[index].put(key)
        rows = connection.execute(self._SELECT, (db_key, raw, time.time())).fetchall()
        return (index, rows[0]) if rows else None

    def get(self, key: str, default: Any = None) -> Any:
        found = self._row(key)
        if found is None:
            return default
        index, (mode, filename, value) = found
        try:
            return self._disks[index].fetch(mode, filename, value, False)
        except OSError:  # its value file is gone: a miss, as in diskcache
            return default

    def __contains__(self, key: str) -> bool:
        return self._row(key) is not None

    def set(self, key: str, value: Any, *args: Any, **kwargs: Any) -> bool:
        return False  # read-only: new answers stay in memory

    def delete(self, key: str) -> bool:
        return False

    def close(self) -> None:
        with self._lock:
            connections, self._open = self._open, []
        for connection in connections:
            connection.close()
