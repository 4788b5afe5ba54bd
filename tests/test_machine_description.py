"""benchmarks/machine.py: a result names the processor and the vector extensions its kernels ran with."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from machine import cpu_model_and_flags, describe_machine  # noqa: E402

X86 = """processor\t: 0
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma
processor\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse2 avx avx2 fma
"""
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n"


def test_the_model_name_and_vector_flags_are_read_once_from_cpuinfo():
    assert cpu_model_and_flags(X86) == ("AMD EPYC 7B13", ["avx2"])
    assert cpu_model_and_flags(ARM) == ("", ["asimd"])
    assert cpu_model_and_flags("") == ("", [])


def test_the_description_names_cores_python_and_the_thread_setting(monkeypatch):
    monkeypatch.setenv("HONED_GGUF_THREADS", "1")
    text = describe_machine()
    assert "cores" in text and "Python " in text and text.endswith("llama.cpp threads 1")
    monkeypatch.delenv("HONED_GGUF_THREADS")
    assert "llama.cpp threads" not in describe_machine()
