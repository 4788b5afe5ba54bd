"""The call budget an optimizer compiles within.

A budget counts *distinct model requests* a compile makes (task and optimizer model together):
a request identical to one made earlier in the same compile is free when the cache answers it,
exactly as its cache hit is. Counting requests rather than provider calls keeps a compile
deterministic: with a warm cache the same compile makes the same requests, hits the budget at the
same point and returns the same program, while paying for nothing. Provider calls (what the cache
could not answer) are counted separately, as `paid`.

`CallBudget.scope()` puts the budget into DSPy's settings (which DSPy copies into its worker threads)
and makes sure honed's model-call boundary (`honed.models.budgeted`) is installed: every request any
LM makes inside the scope is charged there, before the cache is consulted or the provider called, so
a request past the limit is refused, never sent, whether the LM caches or not.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import dspy

from honed.errors import BudgetExhausted
from honed.models import budgeted

__all__ = ["BudgetExhausted", "CallBudget"]


class CallBudget:
    """At most `limit` distinct requests; `used` grows by a request's cost the first time it is seen."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"budget must be at least 1 model call, got {limit}")
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.used = 0  # generations of distinct requests (a request asking for n completions costs n)
        self.paid = 0  # of those, generations the cache could not answer (provider calls)

    def affords(self, calls: int) -> bool:
        """Whether `calls` more distinct requests fit (an upper bound the caller projects)."""
        return self.used + calls <= self.limit

    def observe(self, key: str, hit: bool, cost: int = 1) -> bool:
        """Charge a request before it is made; `hit`: the cache will answer it; `cost`: its `n`.

        Returns whether it was charged (False: a repeat the cache answers, which is free). Raises
        `BudgetExhausted` instead of charging past the limit; the caller then does not send it.
        """
        with self._lock:
            # A repeat is free when the cache answers it; a repeat that misses (the cache is off, or the
            # first request is still in flight on another thread, or failed) reaches the provider and
            # is charged again.
            if key in self._seen and hit:
                return False
            if self.used + cost > self.limit:
                raise BudgetExhausted(f"the call budget of {self.limit} model calls is spent")
            self._seen.add(key)
            self.used += cost
            if not hit:
                self.paid += cost
            return True

    def settle(self, cost: int, *, charged: bool, expected_hit: bool, hit: bool) -> None:
        """Correct a charge once the request is answered, when the cache did not do what was expected.

        The check before a request only asks whether the cache holds it. Another thread may store the
        answer in between (a hit: no provider call after all), or the entry may go between the check
        and the read (evicted, or unreadable and deleted): then the provider answered a request charged
        as a free repeat, which is counted now even if that takes `used` past `limit`, since it has
        been sent already.
        """
        if hit == expected_hit:
            return
        with self._lock:
            if not charged:
                self.used += cost
            self.paid += -cost if hit else cost

    @contextlib.contextmanager
    def scope(self) -> Iterator[CallBudget]:
        """Charge every model request made inside this block (in DSPy's worker threads too) to this budget."""
        budgeted.install()
        with dspy.context(**{budgeted.BUDGET_SETTING: self}):
            yield self
