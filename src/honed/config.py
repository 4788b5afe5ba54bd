"""`honed.configure(...)`: the task model, the optimizer model, the adapter and the cache in one call.

Everything lands in DSPy's own settings (`dspy.settings.lm`, `.adapter`, and `honed_optimizer_lm`)
and in `dspy.cache`, so plain DSPy code running after `honed.configure` sees the same setup.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dspy

from honed.adapter import TYPED_OUTPUT_MODES, HonedAdapter, TypedOutputs
from honed.cache import HonedCache
from honed.errors import ConfigError
from honed.models.assemble import default_cache_dir
from honed.models.credentials import check_credentials
from honed.models.ray_provider import use_ray, use_threads
from honed.models.resolve import DEFAULT_MODEL, is_gguf_model, resolve_gguf_path

DEFAULT_MAX_TOKENS = 512
ExecutorName = Literal["threads", "ray"]
EXECUTORS: tuple[ExecutorName, ...] = ("threads", "ray")


@dataclass(frozen=True)
class Settings:
    """What `configure` set up; returned to the caller and kept in `dspy.settings`."""

    lm: dspy.BaseLM
    optimizer_lm: dspy.BaseLM
    adapter: HonedAdapter
    cache: HonedCache
    cache_dir: Path | None
    executor: ExecutorName = "threads"


def default_model() -> str:
    return os.environ.get("HONED_MODEL") or DEFAULT_MODEL


def make_lm(model: str | dspy.BaseLM, *, temperature: float = 0.0, max_tokens: int = DEFAULT_MAX_TOKENS,
            num_retries: int = 3, **lm_kwargs: Any) -> dspy.BaseLM:
    """A `dspy.LM` for a litellm model string (or the given LM object unchanged).

    honed routes every model string through litellm (DSPy's `engine="litellm"`) so that a model
    string means what litellm documents, and `gguf/` reaches the embedded provider.
    """
    if isinstance(model, dspy.BaseLM):
        return model
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"model must be a litellm model string such as {DEFAULT_MODEL!r}, got {model!r}")
    if max_tokens is None or int(max_tokens) <= 0:
        raise ConfigError(f"max_tokens must be a positive integer, got {max_tokens!r}")
    if is_gguf_model(model):
        resolve_gguf_path(model)  # fail now, with a clear message, rather than on the first call
    check_credentials(model, lm_kwargs)  # likewise: one error now, not a run of failed examples
    return dspy.LM(model, temperature=temperature, max_tokens=int(max_tokens), num_retries=num_retries,
                   engine="litellm", **lm_kwargs)


def configure(model: str | dspy.BaseLM | None = None, optimizer_model: str | dspy.BaseLM | None = None,
              cache_dir: str | Path | None = None, *, typed_outputs: TypedOutputs = "auto",
              cache: bool = True, temperature: float = 0.0, max_tokens: int = DEFAULT_MAX_TOKENS,
              num_threads: int | None = None, executor: ExecutorName = "threads", ray_address: str | None = None,
              workers: int | None = None, **lm_kwargs: Any) -> Settings:
    """Set the task model, optimizer model, adapter and on-disk cache for honed and DSPy.

    Args:
        model: litellm model string or a `dspy.BaseLM`; default `$HONED_MODEL` or `gguf/smollm2-135m`.
        optimizer_model: the model optimizers use to reflect and propose; default: the task model.
        cache_dir: on-disk cache directory; default `$HONED_CACHE_DIR` or `~/.cache/honed`.
        typed_outputs: how output schemas reach the model (see `HonedAdapter`).
        cache: False keeps responses in memory only (nothing written to disk). A `cache_dir` that cannot
            be used falls back to the same, with a `honed.cache.CacheFallbackWarning`; the returned
            `Settings.cache_dir` is then None.
        num_threads: DSPy's worker threads (default DSPy's, or `workers` with Ray).
        executor: "threads" (default): `gguf/` models generate in this process. "ray": each generation the
            cache cannot answer runs on a Ray actor holding its own copy of the model; the cache and the
            budget stay here, so results and call counts are the same (`honed.models.ray_provider`).
        ray_address: the cluster to join (`HOST:PORT`, `ray://HOST:10001`, `auto`); default `$RAY_ADDRESS`,
            else a new local Ray for this process.
        workers: actors with Ray (default: one per CPU of the cluster).
        temperature, max_tokens, **lm_kwargs: passed to every `dspy.LM` made here (e.g. `api_base`).
    """
    if typed_outputs not in TYPED_OUTPUT_MODES:
        raise ConfigError(f"typed_outputs must be one of {TYPED_OUTPUT_MODES}, got {typed_outputs!r}")
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {EXECUTORS}, got {executor!r}")
    if executor != "ray" and (ray_address is not None or workers is not None):
        raise ConfigError('ray_address and workers (--ray-address, --workers) apply to executor="ray" only '
                          "(--executor ray)")
    lm_options = dict(temperature=temperature, max_tokens=max_tokens, **lm_kwargs)
    lm = make_lm(model if model is not None else default_model(), **lm_options)
    optimizer_lm = lm if optimizer_model is None else make_lm(optimizer_model, **lm_options)
    if executor == "ray":  # before anything changes: an unreachable cluster leaves the old setup in place
        workers = use_ray(ray_address, workers).pool.workers
        num_threads = num_threads or workers  # one driver thread waiting on each actor
    else:
        use_threads()
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    response_cache = _cache_for(directory if cache else None)
    dspy.cache = response_cache
    adapter = HonedAdapter(typed_outputs=typed_outputs)
    extra = {"num_threads": num_threads} if num_threads else {}
    dspy.configure(lm=lm, adapter=adapter, honed_optimizer_lm=optimizer_lm, **extra)
    return Settings(lm, optimizer_lm, adapter, response_cache, directory if response_cache.on_disk else None,
                    executor)


def _cache_for(directory: Path | None) -> HonedCache:
    """Reuse the current cache when it already points at `directory`, so counts keep accumulating.

    A directory that cannot hold a cache (corrupt database, read-only, a file in its place) never stops
    `configure`: `HonedCache.open` falls back to memory only and warns with the directory and the fix.
    """
    current = getattr(dspy, "cache", None)
    if isinstance(current, HonedCache) and current.directory == directory:
        return current
    if directory is None:
        return HonedCache(None, disk=False)
    return HonedCache.open(directory)


def current_cache() -> HonedCache:
    """The active `HonedCache` (installing a memory-only one if DSPy's default is in place)."""
    cache = getattr(dspy, "cache", None)
    if not isinstance(cache, HonedCache):
        cache = HonedCache(None, disk=False)
        dspy.cache = cache
    return cache


def optimizer_lm() -> dspy.BaseLM:
    """The optimizer model set by `configure`, else the task model."""
    lm = dspy.settings.get("honed_optimizer_lm") or dspy.settings.lm
    if lm is None:
        raise ConfigError("no model configured: call honed.configure(...) first")
    return lm
