"""The switch that lets unit tests refuse real model requests (see `honed.testing.block_model_requests`)."""

from __future__ import annotations

from honed.errors import ModelRequestBlocked

_blocked_globally = False


def set_blocked(blocked: bool) -> bool:
    """Block or allow real model requests in every thread; returns the previous setting."""
    global _blocked_globally
    previous = _blocked_globally
    _blocked_globally = blocked
    return previous


def check_allowed(model: str) -> None:
    if _blocked_globally:
        raise ModelRequestBlocked(
            f"a real model request to `{model}` was made while model requests are blocked; "
            "use honed.testing.ScriptedLM or SchemaLM in unit tests"
        )
