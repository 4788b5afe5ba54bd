"""Refuse a remote model whose credentials are missing before the first request, naming what to set.

Without this, a run on `openai/gpt-4o-mini` with no key fails every example with "Missing credentials"
and reports a score of 0; the user learns nothing until the end. litellm knows which environment
variables each provider needs (`litellm.validate_environment`); honed asks it once, up front.
"""

from __future__ import annotations

import re
from typing import Any

from honed.errors import ConfigError
from honed.models.quiet import quiet_litellm
from honed.models.resolve import is_gguf_model

# litellm also lists endpoint variables (OLLAMA_API_BASE, ...) that have working defaults; only secrets
# are credentials a request cannot do without.
_CREDENTIAL = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)


def missing_credentials(model: str, lm_kwargs: dict[str, Any]) -> list[str]:
    """The environment variables `model` needs and does not have (empty when it has what it needs).

    A key passed explicitly (`api_key=...`) satisfies any provider; `gguf/` models need none.
    """
    if is_gguf_model(model) or lm_kwargs.get("api_key"):
        return []
    import litellm

    try:
        with quiet_litellm():  # a provider litellm does not know prints a banner into stdout
            found = litellm.validate_environment(model=model, api_base=lm_kwargs.get("api_base"))
    except Exception:  # a provider litellm cannot map: let the first request say what it needs
        return []
    if found.get("keys_in_environment"):
        return []
    return [str(name) for name in found.get("missing_keys") or [] if _CREDENTIAL.search(str(name))]


def check_credentials(model: str, lm_kwargs: dict[str, Any]) -> None:
    """Raise `ConfigError` naming the variables to set when `model` cannot authenticate."""
    missing = missing_credentials(model, lm_kwargs)
    if missing:
        names = " and ".join(missing)
        raise ConfigError(f"model {model} needs {names}: set it (export {missing[0]}=...) or pass api_key=..., "
                          "then run again")
