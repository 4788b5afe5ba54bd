"""The compile's call budget, charged where DSPy makes a model request, whatever LM object makes it.

A budget must see every request of a compile, the task model's and the optimizer model's, before the
provider is called, so that a request past the limit is refused rather than sent. Where DSPy 3.4 lets
honed stand:

- callbacks (`on_lm_start`) are DSPy's documented per-call hook, but they run before the request is
  prepared (so they cannot key it) and DSPy swallows what they raise (logged as a warning), so they
  cannot refuse a call;
- DSPy's cache is the other point every call used to pass, but an LM made with `cache=False` skips it
  entirely, so a budget enforced there let such an LM through uncounted;
- a wrapper LM would have to replace every LM object a compile can reach (`dspy.settings.lm`, the
  optimizer model, a predictor's own `lm`, the copies DSPy's optimizers make, teacher settings) and
  mimic what honed's adapter reads from it (`model`, `engine`, `kwargs`).

Every `BaseLM` call (`__call__`, `acall`, `dspy.LM.forward`/`aforward`; cache on or off; a native,
litellm, custom or legacy engine) goes through `dspy.clients.execution.execute` or `aexecute`, which
DSPy imports from that module at call time, with the prepared call whose `.key()` is the very request
DSPy's cache keys on. Wrapping those two functions (`install`) is therefore the one place that sees
every request once, before the cache lookup and the provider. It is the only change honed makes to
DSPy's call path; `tests/test_budget_boundary.py` fails if a DSPy upgrade routes calls around it.
Outside a `CallBudget.scope()` the wrappers only pass the call on.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any, Protocol

import dspy

BUDGET_SETTING = "honed_budget"  # the dspy.settings key: DSPy copies its settings into worker threads
_install_lock = threading.Lock()


class Budget(Protocol):
    """What the boundary needs from a budget (`honed.optimizers.budget.CallBudget`)."""

    def observe(self, key: str, hit: bool, cost: int = 1) -> bool: ...

    def settle(self, cost: int, *, charged: bool, expected_hit: bool, hit: bool) -> None: ...


def request_key(lm: Any, call: Any, asynchronous: bool = False) -> str:
    """DSPy's cache key of this request (with honed's model identity when honed's cache is installed).

    The same with the cache on or off, since `PreparedCall.key` is built from the request alone. The
    budget always uses the synchronous form, so a request is one request whether `__call__` or `acall`
    makes it; the cache check uses the form the cache is looked up with. A request DSPy cannot key
    (DSPy then skips the cache for it too) gets a key of its own, so it is always charged.
    """
    from dspy.clients.execution import IGNORED_CACHE_KEYS

    try:
        return dspy.cache.cache_key(call.key(lm, asynchronous), IGNORED_CACHE_KEYS)
    except Exception:
        return f"unkeyable:{uuid.uuid4()}"


def _active_budget() -> Budget | None:
    return dspy.settings.get(BUDGET_SETTING)


def _charge(budget: Budget, lm: Any, call: Any, asynchronous: bool) -> tuple[int, bool, bool]:
    """Charge the request before it is made; (cost, charged, expected_hit) for `settle` afterwards.

    Whether the cache will answer is checked (without reading the entry) only for `call.cache`:
    DSPy never looks up a call whose cache is off, so such a repeat always reaches the provider.
    """
    key = request_key(lm, call)
    expected_hit = False
    if call.cache:
        lookup = request_key(lm, call, asynchronous) if asynchronous else key
        expected_hit = lookup in dspy.cache
    cost = max(1, int(call.n or 1))
    return cost, budget.observe(key, hit=expected_hit, cost=cost), expected_hit


def _settle(budget: Budget, charge: tuple[int, bool, bool], result: Any) -> None:
    cost, charged, expected_hit = charge
    budget.settle(cost, charged=charged, expected_hit=expected_hit, hit=bool(getattr(result, "cache_hit", False)))


def install() -> None:
    """Wrap DSPy's `execute`/`aexecute` once per process so an active budget charges every request."""
    from dspy.clients import execution

    with _install_lock:
        if getattr(execution.execute, "_honed_budgeted", False):
            return
        original, aoriginal = execution.execute, execution.aexecute

        def execute(lm: Any, call: Any) -> Any:
            budget = _active_budget()
            if budget is None:
                return original(lm, call)
            charge = _charge(budget, lm, call, asynchronous=False)
            result = original(lm, call)
            _settle(budget, charge, result)
            return result

        async def aexecute(lm: Any, call: Any) -> Any:
            budget = _active_budget()
            if budget is None:
                return await aoriginal(lm, call)
            # The cache check may read the disk: off the event loop, as DSPy's own lookup is.
            charge = await asyncio.to_thread(_charge, budget, lm, call, True)
            result = await aoriginal(lm, call)
            _settle(budget, charge, result)
            return result

        execute._honed_budgeted = True  # type: ignore[attr-defined]
        aexecute._honed_budgeted = True  # type: ignore[attr-defined]
        execution.execute, execution.aexecute = execute, aexecute
