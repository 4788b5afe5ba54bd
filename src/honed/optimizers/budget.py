"""The call budget an optimizer compiles within.

A budget counts *distinct model requests* a compile makes (task and optimizer model together):
a request identical to one made earlier in the same compile is free, exactly as its cache hit is.
Counting requests rather than provider calls keeps a compile deterministic: with a warm cache the
same compile makes the same requests, hits the budget at the same point and returns the same
program, while paying for nothing. Provider calls (cache misses) are reported separately.

`CallBudget.scope()` puts the budget into DSPy's settings; `HonedCache.get` reports every request
to it before the provider is called, so a request past the limit is refused, never sent.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import dspy

from honed.errors import HonedError


class BudgetExhausted(HonedError):
    """A request would exceed the compile's call budget; it was not sent."""

    status_code = 400  # so litellm/DSPy treat it as a bad request: never retried

    def __init__(self, message: str):
        self.message = message
        super().__init__(message)


class CallBudget:
    """At most `limit` distinct requests; `used` grows by one per new request key."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"budget must be at least 1 model call, got {limit}")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.used = 0  # generations of distinct requests (a request asking for n completions costs n)
        self.paid = 0  # of those, generations the cache could not answer (provider calls)

    @property
    def remaining(self) -> int:
        return self.limit - self.used

    def affords(self, calls: int) -> bool:
        """Whether `calls` more distinct requests fit (an upper bound the caller projects)."""
        return self.used + calls <= self.limit

    def observe(self, key: str, hit: bool, cost: int = 1) -> None:
        """Called by the cache for each request, before any provider call; `cost` is its `n`."""
        with self._lock:
            # A repeat is free when the cache answers it; a repeat that misses (the first request is
            # still in flight on another thread, or failed) reaches the provider and is charged again.
            if key in self._seen and hit:
                return
            if self.used + cost > self.limit:
                raise BudgetExhausted(f"the call budget of {self.limit} model calls is spent")
            self._seen.add(key)
            self.used += cost
            if not hit:
                self.paid += cost

    @contextlib.contextmanager
    def scope(self) -> Iterator[CallBudget]:
        with dspy.context(honed_budget=self):
            yield self


def active_budget() -> CallBudget | None:
    return dspy.settings.get("honed_budget")
