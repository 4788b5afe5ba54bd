"""Numeric `HONED_*` environment variables: the default when unset, the value when valid, and one error naming
the variable when not (not a ValueError from deep inside `import honed`)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from honed.env_settings import env_float, env_int
from honed.errors import ConfigError


def test_unset_or_blank_gives_the_default(monkeypatch):
    monkeypatch.delenv("HONED_TEST_N", raising=False)
    assert env_int("HONED_TEST_N", 7) == 7
    monkeypatch.setenv("HONED_TEST_N", "  ")
    assert env_int("HONED_TEST_N", 7) == 7 and env_float("HONED_TEST_N", 0.5) == 0.5


def test_a_valid_value_is_read(monkeypatch):
    monkeypatch.setenv("HONED_TEST_N", " 42 ")
    assert env_int("HONED_TEST_N", 7, minimum=1) == 42 and env_float("HONED_TEST_N", 0.5) == 42.0


@pytest.mark.parametrize(("raw", "needle"), [("4k", "is not a whole number"), ("-3", "below its least value 0")])
def test_a_bad_value_is_one_error_naming_the_variable_and_the_fix(monkeypatch, raw, needle):
    monkeypatch.setenv("HONED_TEST_N", raw)
    with pytest.raises(ConfigError) as info:
        env_int("HONED_TEST_N", 7, minimum=0)
    assert needle in str(info.value) and "HONED_TEST_N" in str(info.value) and "unset it" in str(info.value)


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "soon"])
def test_a_float_setting_must_be_a_finite_number(monkeypatch, raw):
    monkeypatch.setenv("HONED_TEST_N", raw)
    with pytest.raises(ConfigError, match="is not a finite number"):
        env_float("HONED_TEST_N", 0.5, minimum=0.0)


def test_a_bad_number_in_the_environment_stops_import_with_that_message():
    env = {**os.environ, "HONED_GGUF_N_CTX": "4k"}
    done = subprocess.run([sys.executable, "-c", "import honed"], env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "ConfigError: HONED_GGUF_N_CTX='4k' is not a whole number" in done.stderr.splitlines()[-1]
