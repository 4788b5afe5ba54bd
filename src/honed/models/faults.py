"""Tell "the provider cannot be reached" apart from "this call failed": the one place honed decides it.

A failed answer (a 5xx after DSPy's retries, a timeout, malformed JSON) is one example's problem: it is
counted, scored 0, and the evaluation or compile goes on. A provider that refuses connections fails
*every* later call the same way, so counting them would quietly turn the rest of a compile into zeros
(and a resumed compile would then replay those zeros). Such an error stops the caller instead, as
`honed.errors.ProviderUnavailable`; the ledger and the cache keep everything done so far.

By the time honed sees the error, DSPy has retried it (`num_retries`) and wrapped it several times
(`LMServerError` <- litellm <- `openai.APIConnectionError` <- httpx). litellm even reports a refused
connection as an `InternalServerError`, and `openai.APITimeoutError` subclasses `APIConnectionError`, so
neither class tells the cases apart. The cause chain does: only a failure to *open* a connection (refused,
unknown host, unreachable network, no TCP handshake) means the provider is unavailable. A connection that
opened and then broke or timed out mid-answer remains a failed call.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from honed.errors import ProviderUnavailable, cause_chain, find_cause
from honed.models.identity import public_endpoint

_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EHOSTDOWN}


def _is_connect_phase(error: BaseException, name: str) -> bool:
    """httpx/httpcore name the connect phase in the class: raised before any byte of the request left."""
    return any(c.__name__ == name and c.__module__.split(".")[0] in ("httpx", "httpcore") for c in type(error).__mro__)


# What a link of the cause chain means, most specific first (an httpx ConnectError wraps the OS error).
_MEANINGS: tuple[tuple[Callable[[BaseException], bool], str], ...] = (
    (lambda e: isinstance(e, ConnectionRefusedError), "connection refused"),
    (lambda e: isinstance(e, socket.gaierror), "host name not found"),
    (lambda e: isinstance(e, OSError) and e.errno in _UNREACHABLE_ERRNOS, "host unreachable"),
    (lambda e: _is_connect_phase(e, "ConnectTimeout"), "no answer to the connection attempt"),
    (lambda e: _is_connect_phase(e, "ConnectError"), "cannot connect"),
)


def _connect_failure(error: BaseException) -> tuple[BaseException, str] | None:
    """The link of `error`'s cause chain that shows no connection could be opened, and what it means."""
    links = list(cause_chain(error))
    for matches, meaning in _MEANINGS:
        for link in links:
            if matches(link):
                return link, meaning
    return None


def _endpoint(lm: Any) -> str | None:
    """The LM's `api_base` without credentials, query or fragment (it lands in messages and logs)."""
    kwargs = getattr(lm, "kwargs", None) or {}
    return public_endpoint(kwargs.get("api_base") or kwargs.get("base_url"))


def provider_unavailable(error: BaseException, lm: Any = None) -> ProviderUnavailable | None:
    """The `ProviderUnavailable` that `error` amounts to, or None when it is an ordinary failed call.

    Returns the one already in `error`'s cause chain, if any; otherwise, when the chain shows that no
    connection could be opened to the provider, a new one naming `lm`'s model and endpoint (default: the
    configured LM), with `error` as its cause. Callers raise the result instead of counting the failure.
    """
    found = find_cause(error, ProviderUnavailable)
    if isinstance(found, ProviderUnavailable):
        return found
    failure = _connect_failure(error)
    if failure is None:
        return None
    cause, meaning = failure
    if lm is None:
        import dspy

        lm = dspy.settings.lm
    model = getattr(lm, "model", None)
    endpoint = _endpoint(lm)
    retries = getattr(lm, "num_retries", None)
    problem = meaning + (f" at {endpoint}" if endpoint else "")
    detail = str(cause).strip().splitlines()[0] if str(cause).strip() else ""
    if detail and not detail.lower().endswith(meaning):  # more than the errno's own words
        problem += f" ({type(cause).__name__}: {detail[:160]})"
    if isinstance(retries, int):
        problem += f" after {retries + 1} attempt{'s' if retries else ''}"
    unavailable = ProviderUnavailable(model if isinstance(model, str) else None, problem)
    unavailable.__cause__ = error
    return unavailable


def raise_if_unavailable(error: BaseException, lm: Any = None) -> None:
    """From an `except` block: raise `ProviderUnavailable` when `error` means the provider cannot be reached.

    Re-raises `error` itself when it already carries one (so it is never chained to itself); otherwise
    raises a new one caused by `error`. Returns when `error` is an ordinary failed call.
    """
    if find_cause(error, ProviderUnavailable) is not None:
        raise error
    unavailable = provider_unavailable(error, lm)
    if unavailable is not None:
        raise unavailable from error
