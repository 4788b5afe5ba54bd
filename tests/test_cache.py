"""Every call is cached on disk under a key that includes the model's identity."""

from __future__ import annotations

import dspy

import honed
from honed.cache import HonedCache
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
