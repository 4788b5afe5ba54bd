"""Numbers and switches read from `HONED_*` environment variables, with one clear error for a number that is
not one.

Why one place: several modules read a size or a count from the environment when they are imported
(`HONED_GGUF_N_CTX`, `HONED_CONTEXT_RESERVE`, `HONED_MAX_LINE_BYTES`, ...). A bare `int(...)` there turned a
typo into a ValueError traceback from deep inside `import honed`; this says which variable, what it held and
what it takes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from honed.errors import ConfigError


def env_flag(name: str, default: bool) -> bool:
    """`$name` as a switch: `default` when unset or blank; off for 0, false, no or off; on for anything else."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return raw.lower() not in ("0", "false", "no", "off")


def env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    """`$name` as a whole number (`default` when unset or blank); ConfigError when it is not one."""
    return int(_env_number(name, default, int, "a whole number", minimum))


def env_float(name: str, default: float, *, minimum: float | None = None) -> float:
    """`$name` as a finite number (`default` when unset or blank); ConfigError when it is not one."""
    return float(_env_number(name, default, float, "a finite number", minimum))


def _env_number(name: str, default: float, parse: Callable[[str], float], kind: str,
                minimum: float | None) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not {kind}; set it to one (e.g. {name}={default}) "
                          "or unset it for the default")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} is below its least value {minimum}; set it to {minimum} or more, "
                          f"or unset it for the default ({default})")
    return value
