"""Loading GGUF files with llama.cpp's AMX kernels off where they crash (honed.models.llama_load).

No model is loaded here: `llama_cpp.Llama` is replaced by a recorder that reads the default model parameters
the way the real one does when it is constructed, so these tests check what a load would see."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.llama_cpp as lib
import pytest

from honed.models import llama_load

XEON_INFO = (
    "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | AVX512 = 1 | AMX_INT8 = 1 | "
    "LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |"
)
EPYC_INFO = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | LLAMAFILE = 1 | REPACK = 1 |"


class RecordingLlama:
    """Stands in for `llama_cpp.Llama`: records its arguments and the default model parameters at load time."""

    loads: list[dict[str, Any]] = []

    def __init__(self, model_path: str, **kwargs: Any) -> None:
        params = lib.llama_model_default_params()
        RecordingLlama.loads.append(
            {"model_path": model_path, "kwargs": kwargs, "use_extra_bufts": bool(params.use_extra_bufts)}
        )


@pytest.fixture
def recording_llama(monkeypatch: pytest.MonkeyPatch) -> type[RecordingLlama]:
    RecordingLlama.loads = []
    monkeypatch.setattr(llama_cpp, "Llama", RecordingLlama)
    monkeypatch.delenv("HONED_GGUF_EXTRA_BUFTS", raising=False)
    return RecordingLlama


def test_has_amx_reads_llama_cpps_system_info() -> None:
    assert llama_load.has_amx(XEON_INFO)
    assert not llama_load.has_amx(EPYC_INFO)
    assert not llama_load.has_amx("CPU : AMX_INT8 = 0 | AVX2 = 1 |")


def test_system_info_is_llama_cpps_own_text() -> None:
    info = llama_load.system_info()
    assert "AVX" in info or "NEON" in info or "CPU" in info


def test_amx_cpu_loads_with_extra_buffer_types_off(
    monkeypatch: pytest.MonkeyPatch, recording_llama: type[RecordingLlama]
) -> None:
    monkeypatch.setattr(llama_load, "system_info", lambda: XEON_INFO)
    default_before = bool(lib.llama_model_default_params().use_extra_bufts)

    llama_load.load_llama(Path("/models/m.gguf"), n_ctx=512, seed=0)

    (load,) = recording_llama.loads
    assert load == {"model_path": "/models/m.gguf", "kwargs": {"n_ctx": 512, "seed": 0}, "use_extra_bufts": False}
    # The defaults are llama.cpp's own again once the load is over.
    assert bool(lib.llama_model_default_params().use_extra_bufts) == default_before


def test_cpu_without_amx_keeps_llama_cpps_defaults(
    monkeypatch: pytest.MonkeyPatch, recording_llama: type[RecordingLlama]
) -> None:
    monkeypatch.setattr(llama_load, "system_info", lambda: EPYC_INFO)
    llama_load.load_llama(Path("m.gguf"))
    (load,) = recording_llama.loads
    assert load["use_extra_bufts"] == bool(lib.llama_model_default_params().use_extra_bufts)
    assert load["use_extra_bufts"] is True  # llama.cpp's default: weights repacked for the faster kernels


@pytest.mark.parametrize(("value", "info", "expected"), [("1", XEON_INFO, True), ("0", EPYC_INFO, False)])
def test_environment_decides_over_the_cpu(
    monkeypatch: pytest.MonkeyPatch, recording_llama: type[RecordingLlama], value: str, info: str, expected: bool
) -> None:
    monkeypatch.setattr(llama_load, "system_info", lambda: info)
    monkeypatch.setenv("HONED_GGUF_EXTRA_BUFTS", value)
    llama_load.load_llama(Path("m.gguf"))
    assert recording_llama.loads[0]["use_extra_bufts"] is expected


def test_defaults_are_restored_when_the_load_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    class FailingLlama:
        def __init__(self, model_path: str, **kwargs: Any) -> None:
            raise ValueError(f"Failed to load model from file: {model_path}")

    monkeypatch.setattr(llama_cpp, "Llama", FailingLlama)
    monkeypatch.setattr(llama_load, "system_info", lambda: XEON_INFO)
    monkeypatch.delenv("HONED_GGUF_EXTRA_BUFTS", raising=False)
    original = lib.llama_model_default_params
    with pytest.raises(ValueError, match="Failed to load"):
        llama_load.load_llama(Path("broken.gguf"))
    assert lib.llama_model_default_params is original


def test_concurrent_loads_take_turns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads loading at once: the second waits for the first, so neither load's restore of the defaults
    lands in the middle of the other's load (each sees the extra buffer types off)."""
    events: list[str] = []
    first_inside = threading.Event()

    class SlowLlama:
        def __init__(self, model_path: str, **kwargs: Any) -> None:
            events.append(f"enter {model_path}")
            if model_path == "first.gguf":
                first_inside.set()
                threading.Event().wait(0.3)
            events.append(f"{model_path} extra_bufts={bool(lib.llama_model_default_params().use_extra_bufts)}")
            events.append(f"exit {model_path}")

    monkeypatch.setattr(llama_cpp, "Llama", SlowLlama)
    monkeypatch.setattr(llama_load, "system_info", lambda: XEON_INFO)
    monkeypatch.delenv("HONED_GGUF_EXTRA_BUFTS", raising=False)
    first = threading.Thread(target=llama_load.load_llama, args=(Path("first.gguf"),))
    first.start()
    assert first_inside.wait(5)
    second = threading.Thread(target=llama_load.load_llama, args=(Path("second.gguf"),))
    second.start()
    first.join(5)
    second.join(5)
    assert events == [
        "enter first.gguf",
        "first.gguf extra_bufts=False",
        "exit first.gguf",
        "enter second.gguf",
        "second.gguf extra_bufts=False",
        "exit second.gguf",
    ]
    assert bool(lib.llama_model_default_params().use_extra_bufts) is True
