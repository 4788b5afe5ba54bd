"""A remote model without its key is one upfront error naming the variable, not a run of failed examples."""

from __future__ import annotations

import pytest

import honed
from honed.cli import main
from honed.errors import ConfigError
from honed.models.credentials import missing_credentials


@pytest.fixture
def no_openai_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_configure_names_the_missing_variable(no_openai_key: None, tmp_path) -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY") as info:
        honed.configure(model="openai/gpt-4o-mini", cache_dir=tmp_path / "c")
    assert "openai/gpt-4o-mini" in str(info.value) and "export OPENAI_API_KEY=" in str(info.value)


def test_the_optimizer_model_is_checked_too(no_openai_key: None, tmp_path) -> None:
    with pytest.raises(ConfigError, match="openai/gpt-4o needs OPENAI_API_KEY"):
        honed.configure(model="gguf/smollm2-135m", optimizer_model="openai/gpt-4o", cache_dir=tmp_path / "c")


def test_eval_exits_1_with_one_line_before_any_example(no_openai_key: None, tmp_path, capsys) -> None:
    code = main(["eval", "sentiment", "--model", "openai/gpt-4o-mini", "--limit", "3",
                 "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and "OPENAI_API_KEY" in err


def test_a_key_in_the_environment_or_given_explicitly_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert missing_credentials("openai/gpt-4o-mini", {"api_key": "sk-given"}) == []
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert missing_credentials("openai/gpt-4o-mini", {}) == []


def test_embedded_and_keyless_providers_need_nothing(no_openai_key: None) -> None:
    assert missing_credentials("gguf/smollm2-135m", {}) == []
    assert missing_credentials("ollama_chat/llama3.2", {}) == []


def test_a_provider_litellm_does_not_know_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    """litellm prints a "Provider List" banner on stdout for a model it cannot route; the credentials
    check must not write it into `honed run`'s JSON output."""
    import litellm

    before = litellm.suppress_debug_info
    litellm.suppress_debug_info = False
    try:
        assert missing_credentials("unroutable-model-name", {}) == []
    finally:
        litellm.suppress_debug_info = before
    assert capsys.readouterr().out == ""
    assert litellm.suppress_debug_info is before
