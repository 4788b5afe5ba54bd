"""Every call is cached on disk under a key that includes the model's identity; a cache that cannot be
written is still read."""

from __future__ import annotations

import contextlib
import sqlite3
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dspy
import pytest

import honed
from honed.cache import CacheFallbackWarning, HonedCache
from honed.models import model_identity
from honed.testing import ScriptedLM


def _program():
    return honed.Transform(input_field="word", output_field="plural", instructions="Write the plural.")


def test_repeat_is_a_hit_and_survives_a_new_process(cache_dir):
    lm = ScriptedLM(lambda messages, schema: {"plural": "mice"})
    honed.configure(model=lm, cache_dir=cache_dir)
    cache = honed.current_cache()
    assert _program()(word="mouse").plural == "mice"
    assert _program()(word="mouse").plural == "mice"
    assert len(lm.engine.calls) == 1
    assert (cache.counts(lm.model).hits, cache.counts(lm.model).misses) == (1, 1)

    # A new cache object over the same directory, memory tier off: only the disk can answer.
    dspy.cache = HonedCache(cache_dir, memory=False)
    fresh = ScriptedLM(lambda messages, schema: {"plural": "WRONG"})
    honed.configure(model=fresh, cache_dir=cache_dir)
    assert _program()(word="mouse").plural == "mice"
    assert fresh.engine.calls == []


def test_different_gguf_files_never_share_keys(tmp_path):
    first, second = tmp_path / "a.gguf", tmp_path / "b.gguf"
    first.write_bytes(b"model one")
    second.write_bytes(b"model two")
    cache = HonedCache(tmp_path / "c")
    request = {"model": f"gguf/{first}", "messages": [{"role": "user", "content": "hi"}]}
    same_name_other_file = dict(request)
    assert cache.cache_key(request) == cache.cache_key(same_name_other_file)
    first.write_bytes(b"model one, retrained")  # same path, new content
    assert model_identity(f"gguf/{first}") != model_identity(f"gguf/{second}")
    changed = HonedCache(tmp_path / "d").cache_key(request)
    assert changed != HonedCache(tmp_path / "e").cache_key({**request, "model": f"gguf/{second}"})


def test_file_content_change_changes_the_key(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(b"v1")
    request = {"model": f"gguf/{path}", "messages": []}
    cache = HonedCache(tmp_path / "c")
    before = cache.cache_key(request)
    path.write_bytes(b"v2 longer")
    assert cache.cache_key(request) != before


def test_endpoint_is_part_of_the_key(tmp_path):
    cache = HonedCache(tmp_path / "c")
    base = {"model": "openai/m", "messages": [{"role": "user", "content": "hi"}], "api_key": "sk-1"}
    one = cache.cache_key({**base, "api_base": "http://127.0.0.1:1/v1"})
    two = cache.cache_key({**base, "api_base": "http://127.0.0.1:2/v1"})
    assert one != two
    assert one == cache.cache_key({**base, "api_base": "http://127.0.0.1:1/v1/", "api_key": "sk-other"})


def test_memory_only_cache_writes_nothing(tmp_path):
    lm = ScriptedLM(lambda messages, schema: {"plural": "geese"})
    settings = honed.configure(model=lm, cache_dir=tmp_path / "unused", cache=False)
    assert settings.cache_dir is None
    assert _program()(word="goose").plural == "geese"
    assert not (tmp_path / "unused").exists()


def test_tokens_are_counted_the_same_whether_paid_or_served_from_the_cache(cache_dir):
    lm = ScriptedLM(lambda messages, schema: {"plural": "mice"})
    honed.configure(model=lm, cache_dir=cache_dir)
    cache = honed.current_cache()
    _program()(word="mouse")
    paid = cache.tokens()
    assert paid > 0
    _program()(word="mouse")  # a hit: DSPy clears `usage` on what it serves, the count must not
    assert len(lm.engine.calls) == 1
    assert cache.tokens() == 2 * paid


def _words(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


def _fill(cache_dir: Path, n: int) -> None:
    """A cache directory holding `n` answers (and its handles closed, as at the end of a process)."""
    lm = ScriptedLM(lambda messages, schema: {"plural": messages[-1]["content"].strip() + "s"})
    honed.configure(model=lm, cache_dir=cache_dir)
    assert [_program()(word=w).plural for w in _words(n)] == [w + "s" for w in _words(n)]
    assert len(lm.engine.calls) == n
    honed.current_cache().disk_cache.close()
    dspy.cache = HonedCache(None, disk=False)  # forget it, as a new process would


@contextlib.contextmanager
def _writes_denied(directory: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make `directory` read-only for this process.

    chmod is the real thing, but root ignores file modes; then every sqlite database diskcache opens is
    opened the way sqlite opens a file it may not write (`mode=ro`), so the same "attempt to write a
    readonly database" comes from sqlite itself. URI connections (the read-only reader's) pass as asked.
    """
    paths = [directory, *directory.rglob("*")]
    for path in paths:
        path.chmod(0o500 if path.is_dir() else 0o400)
    probe = directory / ".probe"
    try:
        probe.touch()
    except OSError:
        pass  # the modes hold: a real read-only directory
    else:
        probe.unlink()
        real_connect = sqlite3.connect

        def read_only(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
            if kwargs.get("uri"):
                return real_connect(database, *args, **kwargs)
            return real_connect(f"file:{database}?mode=ro", *args, uri=True, **kwargs)

        monkeypatch.setattr(sqlite3, "connect", read_only)
    try:
        yield
    finally:
        monkeypatch.undo()
        for path in paths:
            path.chmod(0o700 if path.is_dir() else 0o600)


def _database_bytes(directory: Path) -> dict[str, bytes]:
    """The shards' databases (sqlite itself may add `-shm`/`-wal` beside one it reads, where it may)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("cache.db"))}


def test_a_read_only_cache_is_still_read(cache_dir, monkeypatch):
    _fill(cache_dir, 20)
    before = _database_bytes(cache_dir)
    fresh = ScriptedLM(lambda messages, schema: {"plural": messages[-1]["content"].strip() + "es"})
    with _writes_denied(cache_dir, monkeypatch):
        with pytest.warns(CacheFallbackWarning) as caught:
            settings = honed.configure(model=fresh, cache_dir=cache_dir)
        assert len(caught) == 1
        message = str(caught[0].message)
        assert "\n" not in message and str(cache_dir) in message and "20 stored answers are still served" in message
        assert "memory only" in message and f"chmod -R u+w {cache_dir}" in message
        cache = settings.cache
        assert cache.read_only and not cache.on_disk and "readonly" in cache.disk_error.lower()

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once, at open; serving is quiet
            answers = [_program()(word=w).plural for w in _words(20)]
            assert answers == [w + "s" for w in _words(20)]  # the stored answers, not the fresh model's
            assert fresh.engine.calls == [] and cache.counts(fresh.model).hits == 20

            assert _program()(word="ox").plural == "oxes"  # new: asked once, then kept in memory
            assert _program()(word="ox").plural == "oxes"
            assert len(fresh.engine.calls) == 1
    assert _database_bytes(cache_dir) == before  # not a byte written


def test_an_unreadable_directory_still_falls_back_to_memory(tmp_path):
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / "000").mkdir()
    (directory / "000" / "cache.db").write_bytes(b"not a database" * 100)
    with pytest.warns(CacheFallbackWarning, match="memory only"):
        cache = HonedCache.open(directory)
    assert not cache.enable_disk_cache and not cache.read_only and cache.disk_error


def test_a_write_that_fails_mid_run_keeps_the_disk_readable(cache_dir, monkeypatch):
    lm = ScriptedLM(lambda messages, schema: {"plural": messages[-1]["content"].strip() + "s"})
    settings = honed.configure(model=lm, cache_dir=cache_dir)
    _program()(word="dog")  # on disk while the disk still takes writes

    def full(*args: Any, **kwargs: Any) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(settings.cache.disk_cache.disk, "set", full)
    with pytest.warns(CacheFallbackWarning, match="could not be written.*still served"):
        assert _program()(word="cat").plural == "cats"
    assert settings.cache.read_only
    settings.cache.reset_memory_cache()  # only the disk can answer "dog" now
    assert _program()(word="dog").plural == "dogs" and _program()(word="cat").plural == "cats"
    assert len(lm.engine.calls) == 3  # dog (before), cat, and cat again: it was never written
