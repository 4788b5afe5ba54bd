"""Shared fixtures. Unit tests run with real model requests blocked; `model`-marked tests may use the
embedded model (and loopback servers)."""

from __future__ import annotations

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
