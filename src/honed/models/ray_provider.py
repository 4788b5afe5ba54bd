"""`executor="ray"`: the `gguf/` provider that sends each generation to a Ray actor instead of running it here.

Why at the provider, not in the optimizers or the evaluator: a request reaches the provider only after DSPy's
call path has charged the budget (`honed.models.budgeted`) and asked the cache (`honed.cache`), both in this
process, the driver. Swapping the provider litellm calls for `gguf/` therefore fans out exactly the cache
misses and nothing else: hits are answered by the driver without asking any actor, each request is charged
once, before it is sent, by the same code as with threads, and every answer is stored by the driver's cache,
so a rerun is free as before. The concurrency is DSPy's threads in the driver (`num_threads` defaults to the
number of workers), each blocked on one actor's answer. Optimizers and evaluation do not change at all.

`RayGGUFProvider` is a `GGUFProvider`, so what asks the installed provider for a model's tokenizer (the
context-fit check before a run) still gets one, loaded here; only `completion` is sent away.

Remote models (`openai/...`, `ollama_chat/...`) are not affected: litellm calls their servers from the driver,
as with threads; such a server is already the place their work scales.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import litellm
from litellm.types.utils import Choices, Message, ModelResponse

from honed.errors import ConfigError
from honed.models.gguf import GGUFProvider, install_gguf_provider, register_gguf_provider
from honed.models.guard import check_allowed
from honed.models.identity import model_identity
from honed.models.ray_cluster import connect
from honed.models.ray_pool import ActorPool
from honed.models.ray_worker import GenerationRequest

WORKER_CPUS = 1  # CPUs (and llama.cpp threads) per actor; one actor per core is what a 135M model uses well

_lock = threading.Lock()
_active: RayGGUFProvider | None = None


class RayGGUFProvider(GGUFProvider):
    """Serves `gguf/` for litellm by handing each generation to a `GenerationWorker` actor of `pool`."""

    def __init__(self, pool: ActorPool, address: str | None) -> None:
        super().__init__(batching=False)  # its own models serve tokenizers only; it never generates here
        self.pool = pool
        self.address = address

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                   model_response: ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                   logging_obj: Any, optional_params: dict, acompletion: Any = None,
                   litellm_params: Any = None, logger_fn: Any = None, headers: dict | None = None,
                   timeout: Any = None, client: Any = None) -> ModelResponse:
        full_model = f"gguf/{model}"
        check_allowed(full_model)  # `block_model_requests` holds for actors too: nothing is sent
        request = GenerationRequest(
            model=full_model, identity=model_identity(full_model),
            messages=[dict(m) if isinstance(m, Mapping) else m for m in messages], params=dict(optional_params))
        generation = self.pool.generate(request)
        choices = [Choices(index=index, finish_reason=reason, message=Message(role="assistant", content=text))
                   for index, (reason, text) in enumerate(generation.choices)]
        return self._respond(model_response, full_model, choices, generation.prompt_tokens,
                             generation.completion_tokens)


def active_ray_provider() -> RayGGUFProvider | None:
    """The provider `use_ray` installed, while it is the one litellm calls for `gguf/`."""
    with _lock:
        return _active if _active is not None and _installed() is _active else None


def use_ray(address: str | None = None, workers: int | None = None) -> RayGGUFProvider:
    """Make litellm's `gguf/` calls run on Ray actors: join `address` (or start a local Ray) with `workers` actors.

    Configuring the same address and number of workers again keeps the actors (and their loaded models).
    """
    global _active
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be a positive integer, got {workers!r}")
    cpus = connect(address, workers, WORKER_CPUS)
    wanted = workers or max(1, cpus // WORKER_CPUS)
    if cpus < wanted * WORKER_CPUS:
        raise ConfigError(f"the Ray cluster offers {cpus} CPUs but {wanted} workers need {wanted * WORKER_CPUS}; "
                          "pass fewer --workers or add nodes")
    with _lock:
        if _active is None or _active.address != address or _active.pool.workers != wanted or _active.pool.closed:
            if _active is not None:
                _active.pool.close()
            _active = RayGGUFProvider(ActorPool(wanted, WORKER_CPUS), address)
        install_gguf_provider(_active)
        return _active


def use_threads() -> None:
    """Serve `gguf/` in this process again (the default); ends the actors of an earlier `use_ray`."""
    global _active
    with _lock:
        previous, _active = _active, None
        if previous is None:
            return
        previous.pool.close()
        if _installed() is previous:
            register_gguf_provider()


def _installed() -> Any:
    """The handler litellm calls for `gguf/` now."""
    return next((entry.get("custom_handler") for entry in litellm.custom_provider_map
                 if entry.get("provider") == "gguf"), None)
