"""Shared fixtures. Unit tests run with real model requests blocked; `model`-marked tests may use the
embedded model (and loopback servers)."""

from __future__ import annotations

from collections.abc import Iterator

import dspy
import pytest

import honed
from honed.testing import block_model_requests


@pytest.fixture(autouse=True)
def _no_real_models_in_unit_tests(request: pytest.FixtureRequest):
    if request.node.get_closest_marker("model"):
        yield
        return
    with block_model_requests():
        yield


@pytest.fixture
def cache_dir(tmp_path):
    """A fresh on-disk cache directory for one test."""
    return tmp_path / "cache"


@pytest.fixture
def embedded(cache_dir):
    """The embedded model with a fresh cache; returns honed's Settings."""
    return honed.configure(model="gguf/smollm2-135m", cache_dir=cache_dir, max_tokens=64)


@pytest.fixture(scope="module")
def restore_dspy_settings() -> Iterator[None]:
    """Leave DSPy's model, adapter and cache as a module found them, for test files that run afterwards."""
    saved = {name: dspy.settings.get(name) for name in ("lm", "adapter", "honed_optimizer_lm")}
    saved_cache = dspy.cache
    yield
    dspy.configure(**saved)
    dspy.cache = saved_cache


@pytest.fixture
def loopback_servers(_no_real_models_in_unit_tests: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Reach a test server on 127.0.0.1 through the socket guard above; every other address stays refused."""
    from fault_server import loopback_only

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    with loopback_only():
        yield
