"""What a result was measured on, in one line: llama.cpp's CPU kernels round differently on another
instruction set, so a greedy decode can take another path and a score can move with the machine
(README, "The numbers depend on the machine"). A result file names the processor and its vector
extensions so that two tables are compared only when they come from the same kind of machine."""

from __future__ import annotations

import os
import platform
from pathlib import Path

VECTOR_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "neon", "asimd")


def cpu_model_and_flags(cpuinfo: str) -> tuple[str, list[str]]:
    """The processor's model name and the vector extensions llama.cpp picks kernels by, from /proc/cpuinfo."""
    model, flags = "", set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, [f for f in VECTOR_FLAGS if f in flags]


def describe_machine() -> str:
    """`x86_64, AMD EPYC, avx2, 2 cores, Python 3.11.7, llama.cpp threads 1` (the threads where set)."""
    cpuinfo = Path("/proc/cpuinfo")
    model, flags = cpu_model_and_flags(cpuinfo.read_text()) if cpuinfo.exists() else (platform.processor(), [])
    parts = [platform.machine(), model or "unknown processor", "+".join(flags) or "no vector flags read",
             f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    if os.environ.get("HONED_GGUF_THREADS"):
        parts.append(f"llama.cpp threads {os.environ['HONED_GGUF_THREADS']}")
    return ", ".join(parts)
