"""Keep litellm from printing to stdout while honed probes a model string.

litellm prints a "Provider List" banner to stdout when it meets a model it cannot route (a `dspy.LM`
with a custom engine, a provider it does not know): honed's own probes (the context-window lookup, the
credentials check) must not write into `honed run`'s JSON output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_litellm() -> Iterator[None]:
    """litellm's debug banner off for the duration (`litellm.suppress_debug_info`), as it was after."""
    import litellm

    before = litellm.suppress_debug_info
    litellm.suppress_debug_info = True
    try:
        yield
    finally:
        litellm.suppress_debug_info = before
