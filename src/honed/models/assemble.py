"""Assemble a chunked bundled model into one verified GGUF file in the cache, once per machine.

Why it is careful: the file is 0.5-1.1 GB, written on first use by whichever processes and threads
happen to resolve the model at the same time, and llama.cpp would happily load a torn or corrupt copy.
So the file appears only whole and verified:

- assembly runs under a per-file lock (a thread lock, since `fcntl.lockf` locks belong to the
  process, and `fcntl.lockf` on `<name>.gguf.lock` against other processes); whoever gets the lock
  second finds the file done and returns it;
- every chunk's size is checked before anything is copied; the bytes go to a temporary file in the
  same directory, hashed while written, fsynced, and moved into place with `os.replace` only when
  the total size and sha256 match the pinned ones. A failed attempt removes its temporary file;
- a verified file gets a stamp, `<name>.gguf.verified` (size, mtime_ns, sha256), so later processes
  check a stat and a small JSON file instead of re-hashing a gigabyte. A file whose size or mtime no
  longer matches its stamp is hashed again (or reassembled when it is truncated or wrong).

Nothing here touches the network: the chunks are files of installed packages.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from honed.errors import ConfigError, ModelFileCorrupt
from honed.files import fsync_directory, write_atomically
from honed.models.bundled import BundledModel, Chunk, ChunkedFile, chunk_paths, reinstall_command

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: only the thread lock applies
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("honed.models")

DEFAULT_CACHE_DIR = Path("~/.cache/honed")
MODELS_SUBDIR = "models"
STAMP_SUFFIX = ".verified"
BLOCK_SIZE = 8 << 20

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def default_cache_dir() -> Path:
    """`$HONED_CACHE_DIR`, else `~/.cache/honed`: where responses, runs and assembled models live.

    Defined here, below `honed.config` (which re-exports it), so that models can find it without a cycle.
    """
    return Path(os.environ.get("HONED_CACHE_DIR") or DEFAULT_CACHE_DIR).expanduser()


def default_models_dir() -> Path:
    """`<default cache dir>/models`."""
    return default_cache_dir() / MODELS_SUBDIR


def assembled_path(model: BundledModel, directory: Path | None = None) -> Path:
    """The verified file of chunked `model` in `directory` (default `default_models_dir()`), assembling it if needed.

    Raises ModelNotFoundError when chunk packages are missing and no verified file exists, and
    ModelFileCorrupt when a chunk or the assembled bytes are not the pinned ones.
    """
    weights = model.weights
    if not isinstance(weights, ChunkedFile):
        raise TypeError(f"{model.model_string} is not a chunked model")
    directory = directory if directory is not None else default_models_dir()
    target = directory / f"{model.name}.gguf"
    if _stamped(target, weights):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {directory} to assemble `{model.model_string}` ({exc.strerror}): "
                          "set HONED_CACHE_DIR to a writable directory") from None
    with _exclusive(target):
        if _stamped(target, weights):  # another thread or process finished it while we waited
            return target
        _remove_temporaries(target)
        if _existing_is_pinned(target, weights):
            _write_stamp(target, weights.sha256)
            return target
        _discard(target)  # missing, truncated or wrong: never returned, rebuilt from the chunks
        _assemble(model, chunk_paths(model), target)
    return target


def verified_sha256(path: Path) -> str | None:
    """The sha256 recorded in `path`'s stamp, if the stamp still matches the file's size and mtime."""
    try:
        stat = path.stat()
        stamp = json.loads(path.with_name(path.name + STAMP_SUFFIX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict):
        return None
    if stamp.get("size") != stat.st_size or stamp.get("mtime_ns") != stat.st_mtime_ns:
        return None
    sha256 = stamp.get("sha256")
    return sha256 if isinstance(sha256, str) else None


def _stamped(target: Path, weights: ChunkedFile) -> bool:
    return verified_sha256(target) == weights.sha256


def _existing_is_pinned(target: Path, weights: ChunkedFile) -> bool:
    """An unstamped file of the right size (a crash before its stamp was written): hash it once."""
    try:
        if target.stat().st_size != weights.size:
            return False
    except FileNotFoundError:
        return False
    return _file_sha256(target) == weights.sha256


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_SIZE), b""):
            digest.update(block)
    return digest.hexdigest()


def _assemble(model: BundledModel, chunks: list[tuple[Chunk, Path]], target: Path) -> None:
    weights = model.weights
    assert isinstance(weights, ChunkedFile)
    for chunk, path in chunks:  # before anything is written
        size = path.stat().st_size
        if size != chunk.size:
            raise _bad_chunk(model, chunk, f"is {size:,} bytes, expected {chunk.size:,}")
    log.info("assembling %s from %d chunks into %s (once; %.1f GB)", model.model_string, len(chunks), target,
             weights.size / 1e9)
    started = time.monotonic()
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    temporary = Path(name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(out.fileno(), 0o644)  # mkstemp makes it private; the cache is shared like the packages
                for chunk, path in chunks:
                    copied = _copy_chunk(path, out, digest)
                    if copied != chunk.size:
                        raise _bad_chunk(model, chunk, f"changed while being read ({copied:,} bytes copied)")
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ConfigError(f"cannot write `{model.model_string}` into {target.parent} ({exc.strerror}): it "
                                  f"needs {weights.size / 1e9:.1f} GB free there; free space or set HONED_CACHE_DIR"
                                  ) from None
            raise ConfigError(f"cannot assemble `{model.model_string}` into {target.parent} ({exc.strerror}: "
                              f"{exc.filename or 'a chunk or the model file'}); check its permissions or set "
                              "HONED_CACHE_DIR") from None
        if digest.hexdigest() != weights.sha256:
            raise _bad_assembly(model, weights, chunks, digest.hexdigest())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)  # gone already when it was moved into place
    fsync_directory(target.parent)
    _write_stamp(target, weights.sha256)
    log.info("assembled %s in %.1fs", model.model_string, time.monotonic() - started)


def _copy_chunk(path: Path, out: BinaryIO, digest: hashlib._Hash) -> int:
    """Append the file at `path` to `out`, feeding `digest`; returns the bytes copied."""
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    copied = 0
    with path.open("rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
            out.write(view[:read])
            copied += read
    return copied


def _bad_chunk(model: BundledModel, chunk: Chunk, problem: str) -> ModelFileCorrupt:
    return ModelFileCorrupt(f"chunk {chunk.path} of `{model.model_string}` (package `{chunk.distribution}`) "
                            f"{problem}; reinstall it with `{reinstall_command(chunk)}`")


def _bad_assembly(model: BundledModel, weights: ChunkedFile, chunks: list[tuple[Chunk, Path]],
                  got: str) -> ModelFileCorrupt:
    """The assembled bytes' hash is wrong: name the first chunk whose own pinned hash differs, if any."""
    for chunk, path in chunks:
        if chunk.sha256 is not None and _file_sha256(path) != chunk.sha256:
            return _bad_chunk(model, chunk, "does not match its pinned sha256")
    return ModelFileCorrupt(f"the chunks of `{model.model_string}` assemble to sha256 {got[:12]}..., not the pinned "
                            f"{weights.sha256[:12]}...; reinstall them with "
                            f"`{model.install_command} --force-reinstall`")


def _write_stamp(target: Path, sha256: str) -> None:
    stat = target.stat()
    text = json.dumps({"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": sha256})
    # 0o644: the cache is shared like the packages. Written under the assembly lock (see `_exclusive`).
    write_atomically(target.with_name(target.name + STAMP_SUFFIX), text, mode=0o644)


def _discard(target: Path) -> None:
    for path in (target.with_name(target.name + STAMP_SUFFIX), target):
        path.unlink(missing_ok=True)


def _remove_temporaries(target: Path) -> None:
    """Temporary files left by a killed assembly. Only called under the lock, so none is in use."""
    for leftover in target.parent.glob(f".{target.name}.*.tmp"):
        leftover.unlink(missing_ok=True)


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold `target`'s assembly lock against other threads of this process and against other processes."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(str(target), threading.Lock())
    with thread_lock:
        fd = os.open(target.with_name(target.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if fcntl is not None:
                fcntl.lockf(fd, fcntl.LOCK_EX)  # waits for the holder; released when fd is closed
            yield
        finally:
            os.close(fd)

