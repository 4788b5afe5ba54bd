"""A litellm custom provider that runs GGUF models in process with llama.cpp.

Why in process: no server to start, model load in a fraction of a second, and decoding can be
constrained by a grammar compiled from the caller's JSON schema, so typed outputs always parse.

One `llama_cpp.Llama` per model file per process. llama.cpp contexts are not safe to share across
threads (a shared instance has segfaulted under DSPy's worker threads), so every call on an
instance holds that instance's lock; DSPy's threads simply queue.

Prompts are measured before anything is generated (`prompt_budget`): a prompt that leaves less than
`min(max_tokens, MIN_ANSWER_TOKENS)` tokens of the context for the answer raises
`honed.errors.ContextLengthExceeded` (HTTP status 400, so neither litellm nor DSPy retries it, and an
evaluation counts the example as failed), instead of llama.cpp's bare ValueError or an answer cut off
after a few tokens that then shows up as a puzzling parse failure. A prompt that fits gets
`max_tokens` clamped to the room left.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litellm import CustomLLM
from litellm.types.utils import Choices, Message, ModelResponse, Usage

from honed.errors import ContextLengthExceeded
from honed.models.guard import check_allowed
from honed.models.resolve import resolve_gguf_path
from honed.models.schema import canonical_json, grammar_for_schema, schema_from_response_format

DEFAULT_MAX_TOKENS = 512
DEFAULT_N_CTX = int(os.environ.get("HONED_GGUF_N_CTX", "4096"))
# The least room a prompt must leave for the answer (or max_tokens, if smaller): a typed answer such
# as {"sentiment": "positive"} takes ~8 tokens, a short text answer a few dozen.
MIN_ANSWER_TOKENS = 32
_LLAMA_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")


class _Measured(Exception):
    """Raised by `_PromptProbe` in place of generating: carries the prompt's tokens."""

    def __init__(self, tokens: list[int]):
        super().__init__(len(tokens))
        self.tokens = tokens


class _PromptProbe:
    """Stands in for a `Llama` when its chat handler runs: everything is delegated except
    `create_completion`, which reports the rendered, tokenized prompt instead of generating. So the count
    is exact for whichever chat template the model uses."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, prompt: Any = None, **_: Any) -> Any:
        raise _Measured(list(prompt) if isinstance(prompt, list) else self._llama.tokenize(
            str(prompt).encode("utf-8"), add_bos=True, special=True))


def count_prompt_tokens(llama: Any, messages: list) -> int:
    """Tokens of `messages` once the model's chat template renders them (what llama.cpp will evaluate).

    Falls back to the tokens of the messages' text (a slight undercount) if the handler cannot be probed;
    llama.cpp's own check, turned into the same error by `_raise_if_overflow`, still backs that up.
    """
    try:
        from llama_cpp import llama_chat_format

        # How `Llama.create_chat_completion` picks its handler (llama-cpp-python 0.3).
        handler = (llama.chat_handler or getattr(llama, "_chat_handlers", {}).get(llama.chat_format)
                   or llama_chat_format.get_chat_completion_handler(llama.chat_format))
        handler(llama=_PromptProbe(llama), messages=messages, max_tokens=1)
    except _Measured as measured:
        return len(measured.tokens)
    except Exception:  # an unusual handler or another llama-cpp-python: count the text instead
        pass
    text = "\n".join(f"{m.get('role', '')}\n{m.get('content') or ''}" for m in messages if isinstance(m, dict))
    return len(llama.tokenize(text.encode("utf-8", errors="replace"), add_bos=True, special=True))


def prompt_budget(model: str, prompt_tokens: int, n_ctx: int, max_tokens: int) -> int:
    """The max_tokens to generate with: `max_tokens` clamped to the room the prompt leaves.

    Raises ContextLengthExceeded when the room is less than `min(max_tokens, MIN_ANSWER_TOKENS)`.
    """
    reserve = max(1, min(max_tokens, MIN_ANSWER_TOKENS))
    room = n_ctx - prompt_tokens
    if room < reserve:
        error = ContextLengthExceeded(model, prompt_tokens, n_ctx)
        error.args = (f"{error} (it must leave {reserve} tokens for the answer; "
                      "HONED_GGUF_N_CTX sets the context of gguf/ models)",)
        raise error
    return min(max_tokens, room)


def _raise_if_overflow(model: str, exc: ValueError) -> None:
    """llama.cpp's own 'exceed context window' ValueError, as ContextLengthExceeded."""
    found = _LLAMA_OVERFLOW.search(str(exc))
    if found:
        raise ContextLengthExceeded(model, int(found.group(1)), int(found.group(2))) from exc


@dataclass
class _LoadedModel:
    llama: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ProviderStats:
    """Calls that reached llama.cpp (cache hits never get here) and the tokens they used."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


class GGUFProvider(CustomLLM):
    """Serves `gguf/<name or path>` for litellm; registered by `register_gguf_provider()`."""

    def __init__(self) -> None:
        super().__init__()
        self._models: dict[Path, _LoadedModel] = {}
        self._load_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = ProviderStats()

    def loaded(self, path: Path) -> _LoadedModel:
        with self._load_lock:
            if path not in self._models:
                from llama_cpp import Llama

                llama = Llama(
                    model_path=str(path),
                    n_ctx=DEFAULT_N_CTX,
                    n_threads=os.cpu_count() or 1,
                    seed=0,
                    verbose=False,
                )
                self._models[path] = _LoadedModel(llama)
            return self._models[path]

    def completion(self, model: str, messages: list, api_base: str, custom_prompt_dict: dict,
                   model_response: ModelResponse, print_verbose: Any, encoding: Any, api_key: Any,
                   logging_obj: Any, optional_params: dict, acompletion: Any = None,
                   litellm_params: Any = None, logger_fn: Any = None, headers: dict | None = None,
                   timeout: Any = None, client: Any = None) -> ModelResponse:
        full_model = f"gguf/{model}"
        check_allowed(full_model)
        loaded = self.loaded(resolve_gguf_path(full_model))
        params = dict(optional_params)
        schema = schema_from_response_format(params.get("response_format"))
        grammar = grammar_for_schema(canonical_json(schema)) if schema is not None else None
        n = int(params.get("n") or 1)
        seed = params.get("seed")
        kwargs = {
            "temperature": float(params["temperature"]) if params.get("temperature") is not None else 0.0,
            "max_tokens": int(params.get("max_tokens") or params.get("max_completion_tokens") or DEFAULT_MAX_TOKENS),
            "stop": params.get("stop") or None,
            "top_p": float(params["top_p"]) if params.get("top_p") is not None else 1.0,
            "grammar": grammar,
        }
        with loaded.lock:
            measured = count_prompt_tokens(loaded.llama, messages)
            kwargs["max_tokens"] = prompt_budget(full_model, measured, loaded.llama.n_ctx(), kwargs["max_tokens"])
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index in range(n):
            call_seed = None if seed is None else int(seed) + index
            with loaded.lock:
                try:
                    out = loaded.llama.create_chat_completion(messages=messages, seed=call_seed, **kwargs)
                except ValueError as exc:
                    _raise_if_overflow(full_model, exc)
                    raise
            usage = out.get("usage") or {}
            prompt_tokens = max(prompt_tokens, int(usage.get("prompt_tokens", 0)))
            completion_tokens += int(usage.get("completion_tokens", 0))
            choice = out["choices"][0]
            choices.append(Choices(index=index, finish_reason=choice.get("finish_reason") or "stop",
                                   message=Message(role="assistant", content=choice["message"]["content"])))
        with self._stats_lock:
            self.stats.calls += n
            self.stats.prompt_tokens += prompt_tokens * n
            self.stats.completion_tokens += completion_tokens
        model_response.choices = choices
        model_response.model = full_model
        model_response.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                     total_tokens=prompt_tokens + completion_tokens)
        return model_response

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return await asyncio.to_thread(self.completion, *args, **kwargs)


_provider: GGUFProvider | None = None
_register_lock = threading.Lock()


def register_gguf_provider() -> GGUFProvider:
    """Register (once) the `gguf` prefix with litellm and return the process's provider."""
    global _provider
    import litellm

    with _register_lock:
        if _provider is None:
            _provider = GGUFProvider()
        entries = [e for e in litellm.custom_provider_map if e.get("provider") != "gguf"]
        litellm.custom_provider_map = [*entries, {"provider": "gguf", "custom_handler": _provider}]
        from litellm.utils import custom_llm_setup

        custom_llm_setup()
        return _provider
