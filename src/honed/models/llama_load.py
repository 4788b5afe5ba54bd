"""Loading a GGUF file with llama.cpp, with the one workaround loading needs: AMX kernels off.

Why: on a CPU with Intel AMX (Sapphire Rapids and later; llama.cpp's system info shows `AMX_INT8 = 1`),
llama.cpp repacks Q4_0/Q4_1/Q8_0/K-quant weights into its AMX buffer, and the first decode of the bundled
Q4_1 SmolLM2 segfaulted in `ggml_backend_amx_mul_mat` (a 2-core Xeon, llama-cpp-python 0.3.36 built
natively; the process dies, so no retry can help). The crash is known upstream and has no fix
(ggml-org/llama.cpp#20824, machine-dependent), and llama.cpp#16315 reports wrong results from the same
kernels for Q4_0 and Q4_1. The AMX kernels are reached only through llama.cpp's "extra buffer types"
(`llama_model_params.use_extra_bufts`), which `llama_cpp.Llama` does not expose: it fills its model
parameters from `llama_model_default_params()`, so while a model loads that function returns them with
the extra buffer types off. Only where llama.cpp reports AMX: elsewhere loading is exactly llama.cpp's
default (the repacked AVX2 kernels stay). `HONED_GGUF_EXTRA_BUFTS=0` or `=1` decides instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from honed.env_settings import env_flag

_PATCH_LOCK = threading.Lock()


def system_info() -> str:
    """llama.cpp's one-line description of the CPU features it was built for and found."""
    import llama_cpp

    return llama_cpp.llama_print_system_info().decode(errors="replace")


def has_amx(info: str) -> bool:
    """Whether llama.cpp's system info reports an AMX kernel (`AMX_INT8 = 1`, `AMX_BF16 = 1`)."""
    return any(f"{name} = 1" in info for name in ("AMX_INT8", "AMX_BF16", "AMX_TILE"))


def extra_buffer_types_enabled() -> bool:
    """Whether weights may be repacked into llama.cpp's extra buffer types: `HONED_GGUF_EXTRA_BUFTS` when set,
    else not on a CPU with AMX (see the module docstring)."""
    default = not has_amx(system_info())
    return env_flag("HONED_GGUF_EXTRA_BUFTS", default)


@contextmanager
def _model_params(**fields: Any) -> Iterator[None]:
    """While it is open, `llama_model_default_params()` (which `llama_cpp.Llama` loads with) returns
    llama.cpp's defaults with `fields` set. One loader at a time, so no other load sees the change."""
    import llama_cpp.llama_cpp as lib

    with _PATCH_LOCK:
        original = lib.llama_model_default_params

        def patched() -> Any:
            params = original()
            for name, value in fields.items():
                setattr(params, name, value)
            return params

        lib.llama_model_default_params = patched
        try:
            yield
        finally:
            lib.llama_model_default_params = original


def load_llama(path: Path, **kwargs: Any) -> Any:
    """A `llama_cpp.Llama` for the file at `path` (`kwargs` are `Llama`'s), AMX kernels off where they crash."""
    from llama_cpp import Llama

    if extra_buffer_types_enabled():
        return Llama(model_path=str(path), **kwargs)
    with _model_params(use_extra_bufts=False):
        return Llama(model_path=str(path), **kwargs)
