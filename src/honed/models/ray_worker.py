"""What runs inside a Ray actor: the in-process `gguf/` provider, and the data that crosses to and from it.

With `executor="ray"` the driver keeps everything up to and including the cache (and so the budget); only a
request the cache could not answer is sent here. The actor then does exactly what the in-process provider
does, by calling that very provider (`GGUFProvider.completion`): the same schema-to-grammar compilation,
the same prompt measuring and `max_tokens` clamping, the same sampling parameters. So at temperature 0 its
answers are the ones the driver would have computed itself. It loads each model file once, on its first
request, and holds it for its lifetime.

Nothing here imports Ray: the class is turned into an actor by `honed.models.ray_pool`, which alone needs it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

from litellm.types.utils import ModelResponse

from honed.errors import ConfigError
from honed.models.gguf import GGUFProvider
from honed.models.identity import model_identity
from honed.models.resolve import GGUF_PREFIX


@dataclass(frozen=True)
class GenerationRequest:
    """One cache miss, as litellm handed it to the driver's provider: plain JSON-like data only."""

    model: str  # the full model string, `gguf/...`
    identity: str  # the model file's content hash as the driver sees it (`model_identity`)
    messages: list[dict[str, Any]]
    params: dict[str, Any]  # litellm's `optional_params`: temperature, max_tokens, response_format, ...


@dataclass(frozen=True)
class Generation:
    """The provider's answer: one (finish reason, text) per choice, and the tokens it used."""

    choices: list[tuple[str, str]]
    prompt_tokens: int
    completion_tokens: int
    worker_pid: int = field(default=0, compare=False)
    seconds: float = field(default=0.0, compare=False)  # spent in the actor's provider (the benchmark's cost)


class GenerationWorker:
    """One actor's model host: a private `GGUFProvider`, so each actor holds its own llama.cpp contexts."""

    def __init__(self) -> None:
        self.provider = GGUFProvider()
        self._checked: dict[str, str] = {}

    def ready(self) -> int:
        """Answers once the actor is up (its process id): lets the pool tell a broken actor from a slow one."""
        return os.getpid()

    def generate(self, request: GenerationRequest) -> Generation:
        started = time.perf_counter()
        self._check_identity(request)
        response = self.provider.completion(
            model=request.model[len(GGUF_PREFIX):], messages=request.messages, api_base=None,
            custom_prompt_dict={}, model_response=ModelResponse(), print_verbose=None, encoding=None,
            api_key=None, logging_obj=None, optional_params=dict(request.params))
        usage = response.usage
        return Generation(
            choices=[(choice.finish_reason or "stop", choice.message.content) for choice in response.choices],
            prompt_tokens=int(usage.prompt_tokens or 0), completion_tokens=int(usage.completion_tokens or 0),
            worker_pid=os.getpid(), seconds=time.perf_counter() - started)

    def _check_identity(self, request: GenerationRequest) -> None:
        """Refuse to answer with another file than the driver's: on a cluster, a node may hold another
        version of a model under the same name, and the driver would cache its answers as the driver's."""
        found = self._checked.get(request.model)
        if found is None:
            found = self._checked[request.model] = model_identity(request.model)
        if found != request.identity:
            raise ConfigError(
                f"{request.model} on Ray worker (pid {os.getpid()}) is not the driver's file ({found} there, "
                f"{request.identity} on the driver); install the same model on every node")
