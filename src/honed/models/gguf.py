"""A litellm custom provider that runs GGUF models in process with llama.cpp.

Why in process: no server to start, model load in a fraction of a second, and decoding can be
constrained by a grammar compiled from the caller's JSON schema, so typed outputs always parse.

One `llama_cpp.Llama` per model file per process. llama.cpp contexts are not safe to share across
threads (a shared instance has segfaulted under DSPy's worker threads), so every call on an
instance holds that instance's lock; DSPy's threads simply queue.

Batched decoding (opt-in: `HONED_GGUF_BATCH=1`; see
`honed.models.batching`): requests arriving concurrently are decoded together as sequences of a second,
multi-sequence context on the same model, owned by one decode-loop thread (so that context, too, is only ever
touched by one thread), each with its own grammar and sampler, each handed back as soon as it ends, and each
starting from the longest prompt prefix any sequence holds in the KV cache. A request is rendered by the same
chat handler, so its prompt tokens, stop strings and sampling parameters are exactly those of the
single-stream path, and each sequence's KV cells sit where the single-stream context puts them, and
generated tokens are decoded in groups no wider than the model computes exactly as one row (probed when the
loop starts; `HONED_GGUF_BATCH_EXACT=0` skips the probe and the limit), so at temperature 0 the answers are
the single-stream ones (not with `HONED_GGUF_BATCH_UNIFIED=1`, below); requests the loop does not implement (streaming,
logprobs, logit bias, mirostat, text prompts) take the single-stream path. Each sequence has the
single-stream context's room (`HONED_GGUF_N_CTX`), and `HONED_GGUF_BATCH_SEQS` of them decode at once
(default 4, fewer for long contexts; more requests wait for a free one). `HONED_GGUF_BATCH_WAIT_MS` (default
0) lets an idle loop wait that long for company before starting a lone request. `HONED_GGUF_BATCH_UNIFIED=1`
puts all sequences in one pool of KV cells (faster, but logits that differ from the single-stream ones in
their low bits; see `LlamaBackend`). `HONED_GGUF_THREADS` sets llama.cpp's threads (default: every core).

Prompts are evaluated in chunks of `HONED_GGUF_N_BATCH` tokens (default 32) at fixed positions, and a later
request reuses only whole chunks of an earlier prompt (`honed.models.prefix_reuse`), so that at temperature 0
an answer does not depend on what the process asked before.

Prompts are measured before anything is generated (`prompt_budget`): a prompt that leaves less than
`min(max_tokens, MIN_ANSWER_TOKENS)` tokens of the context for the answer raises
`honed.errors.ContextLengthExceeded` (HTTP status 400, so neither litellm nor DSPy retries it, and an
evaluation counts the example as failed), instead of llama.cpp's bare ValueError or an answer cut off
after a few tokens that then shows up as a puzzling parse failure. A prompt that fits gets
`max_tokens` clamped to the room left.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import random
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from litellm import CustomLLM
from litellm.types.utils import Choices, Message, ModelResponse, Usage

from honed.env_settings import env_flag, env_float, env_int
from honed.errors import ContextLengthExceeded
from honed.models.batching import BatchEngine, BatchRequest, BatchResult, EngineStats, LlamaBackend
from honed.models.guard import check_allowed
from honed.models.llama_load import load_llama
from honed.models.prefix_reuse import DEFAULT_CHUNK, common_prefix, reusable_prefix
from honed.models.resolve import resolve_gguf_path
from honed.models.schema import canonical_json, grammar_for_schema, schema_from_response_format

DEFAULT_MAX_TOKENS = 512
DEFAULT_N_CTX = env_int("HONED_GGUF_N_CTX", 4096, minimum=64)
# Prompt tokens per llama.cpp decode, and the unit of prefix reuse (`honed.models.prefix_reuse`).
PROMPT_CHUNK = env_int("HONED_GGUF_N_BATCH", DEFAULT_CHUNK, minimum=8)
# The least room a prompt must leave for the answer (or max_tokens, if smaller): a typed answer such
# as {"sentiment": "positive"} takes ~8 tokens, a short text answer a few dozen.
MIN_ANSWER_TOKENS = 32
DEFAULT_BATCH_SEQS = 4
BATCH_KV_CELLS = 16384  # the most KV cells the default batched context holds (4 x the default 4096)
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


def rendered_prompt(llama: Any, messages: list) -> list[int] | None:
    """The tokens the model's chat template renders `messages` to (what llama.cpp will evaluate), or None if
    the handler cannot be probed."""
    try:
        from llama_cpp import llama_chat_format

        # How `Llama.create_chat_completion` picks its handler (llama-cpp-python 0.3).
        handler = (llama.chat_handler or getattr(llama, "_chat_handlers", {}).get(llama.chat_format)
                   or llama_chat_format.get_chat_completion_handler(llama.chat_format))
        handler(llama=_PromptProbe(llama), messages=messages, max_tokens=1)
    except _Measured as measured:
        return [int(token) for token in measured.tokens]
    except Exception:  # an unusual handler or another llama-cpp-python
        pass
    return None


def count_prompt_tokens(llama: Any, messages: list) -> int:
    """Tokens of `messages` once the model's chat template renders them (what llama.cpp will evaluate).

    Falls back to the tokens of the messages' text (a slight undercount) if the handler cannot be probed;
    llama.cpp's own check, turned into the same error by `_raise_if_overflow`, still backs that up.
    """
    return measured_tokens(llama, messages, rendered_prompt(llama, messages))


def measured_tokens(llama: Any, messages: list, rendered: list[int] | None) -> int:
    """`count_prompt_tokens` for `messages` already rendered (`rendered_prompt`, None when it could not be)."""
    if rendered is not None:
        return len(rendered)
    text = "\n".join(f"{m.get('role', '')}\n{m.get('content') or ''}" for m in messages if isinstance(m, dict))
    return len(llama.tokenize(text.encode("utf-8", errors="replace"), add_bos=True, special=True))


def default_batch_seqs(n_ctx: int) -> int:
    """Sequences a batched loop decodes at once: `DEFAULT_BATCH_SEQS`, fewer when each needs a long context, so
    the KV cache stays within `BATCH_KV_CELLS` cells (every sequence gets the full `n_ctx`)."""
    return max(1, min(DEFAULT_BATCH_SEQS, BATCH_KV_CELLS // max(1, n_ctx)))


def batching_enabled() -> bool:
    """Whether new `gguf/` models get a batched decode loop: only with `HONED_GGUF_BATCH=1`.

    Opt-in because it holds a second context per model (the KV cache of every sequence: ~380 MB for 4
    sequences of the 135M at 4096 positions) and gains 1.4-2x on 2 cores (benchmarks/results/provider_speed.md).
    """
    return env_flag("HONED_GGUF_BATCH", False)


def _threads() -> int:
    """llama.cpp threads per context: `HONED_GGUF_THREADS`, else every core."""
    return max(1, env_int("HONED_GGUF_THREADS", os.cpu_count() or 1, minimum=0))


class _Captured(Exception):
    """Raised by `_RequestProbe` in place of generating: the completion call the chat handler would make."""

    def __init__(self, prompt: Any, kwargs: dict[str, Any]):
        super().__init__("captured")
        self.prompt, self.kwargs = prompt, kwargs


class _RequestProbe(_PromptProbe):
    def create_completion(self, prompt: Any = None, **kwargs: Any) -> Any:
        raise _Captured(prompt, kwargs)


def capture_completion(llama: Any, messages: list, **chat_kwargs: Any) -> tuple[Any, dict[str, Any]]:
    """The prompt and arguments `llama.create_chat_completion(messages, **chat_kwargs)` would pass on to
    `create_completion`, with `create_completion`'s defaults filled in: what the batched loop must reproduce."""
    from llama_cpp import Llama

    try:
        Llama.create_chat_completion(_RequestProbe(llama), messages=messages, **chat_kwargs)
    except _Captured as captured:
        defaults = {name: parameter.default for name, parameter in
                    inspect.signature(Llama.create_completion).parameters.items()
                    if parameter.default is not inspect.Parameter.empty}
        return captured.prompt, {**defaults, **captured.kwargs}
    raise RuntimeError("the chat handler returned without asking for a completion")


def batch_request(prompt: Any, kwargs: dict[str, Any], n_ctx: int) -> BatchRequest | None:
    """The captured completion as a `BatchRequest` (seed still unset), or None for what the loop does not do."""
    unsupported = (kwargs.get("stream") or kwargs.get("logprobs") is not None or kwargs.get("echo")
                   or kwargs.get("suffix") is not None or kwargs.get("logits_processor") is not None
                   or kwargs.get("logit_bias") is not None or kwargs.get("mirostat_mode"))
    if unsupported or not isinstance(prompt, list) or not prompt:
        return None
    stop = kwargs.get("stop")
    stop = stop if isinstance(stop, list) else [stop] if isinstance(stop, str) else []
    # `Llama._create_completion`: no or non-positive max_tokens means "to the end of the context".
    max_tokens = kwargs.get("max_tokens")
    if max_tokens is None or max_tokens <= 0:
        max_tokens = n_ctx - len(prompt)
    max_tokens = max_tokens if max_tokens + len(prompt) < n_ctx else n_ctx - len(prompt)
    return BatchRequest(
        prompt=[int(token) for token in prompt], max_tokens=int(max_tokens),
        temperature=float(kwargs["temperature"]), top_p=float(kwargs["top_p"]), top_k=int(kwargs["top_k"]),
        min_p=float(kwargs["min_p"]), typical_p=float(kwargs["typical_p"]),
        repeat_penalty=float(kwargs["repeat_penalty"]), frequency_penalty=float(kwargs["frequency_penalty"]),
        presence_penalty=float(kwargs["presence_penalty"]), grammar=kwargs.get("grammar"),
        stop=[text.encode("utf-8") for text in stop], stopping_criteria=kwargs.get("stopping_criteria"),
    )


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
    # Of the tokens the single-stream context holds, the leading ones evaluated as prompt chunks.
    evaluated: int = 0
    engine: BatchEngine | None = None  # the batched decode loop, when batching is on
    # Serializes prompt rendering for the batched path (and its seed chain); never held while decoding.
    render_lock: threading.Lock = field(default_factory=threading.Lock)
    seed: int | None = None  # the batched path's copy of `Llama._seed`, advanced as `_create_completion` does

    def complete(self, prompt: list[int] | None, **kwargs: Any) -> dict:
        """`Llama.create_chat_completion(**kwargs)` for a call whose rendered prompt is `prompt` (lock held),
        reusing only KV cells a fresh evaluation computes the same (`honed.models.prefix_reuse`): on its own,
        `Llama.generate` reuses the longest common prefix with the previous call, which cuts the prompt where
        that call's happened to end, and then an answer depends on what was asked before."""
        llama = self.llama
        held = [int(token) for token in llama.input_ids[:llama.n_tokens]]
        # `Llama.generate` reuses at most its first `n_tokens` cells and evaluates the rest in chunks of
        # `n_batch` from there; with `n_tokens` a whole number of chunks, every chunk sits at a fixed place.
        llama.n_tokens = reusable_prefix(held, self.evaluated, prompt, int(llama.n_batch)) if prompt else 0
        self.evaluated = 0  # until the call succeeds, the cells are in doubt
        out = llama.create_chat_completion(**kwargs)
        if prompt:
            evaluated = int((out.get("usage") or {}).get("prompt_tokens", 0))
            held = [int(token) for token in llama.input_ids[:llama.n_tokens]]
            self.evaluated = min(common_prefix(held, prompt), evaluated)
        return out

    def next_seed(self, seed: Any) -> int:
        """The sampler seed `Llama._create_completion` would use for `seed` (render_lock held)."""
        if seed is not None:
            self.seed = int(seed)
        else:
            current = getattr(self.llama, "_seed", 0) if self.seed is None else self.seed
            self.seed = random.Random(current).randint(0, 2**32)
        return self.seed


@dataclass
class ProviderStats:
    """Calls that reached llama.cpp (cache hits never get here) and the tokens they used."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    batched_calls: int = 0  # of `calls`, those decoded by a batched loop
    reused_prompt_tokens: int = 0  # of `prompt_tokens`, those a batched loop served from its KV cache


class GGUFProvider(CustomLLM):
    """Serves `gguf/<name or path>` for litellm; registered by `register_gguf_provider()`."""

    def __init__(self, batching: bool | None = None, batch_seqs: int | None = None) -> None:
        """`batching`/`batch_seqs`: None reads `HONED_GGUF_BATCH`/`HONED_GGUF_BATCH_SEQS` when a model loads."""
        super().__init__()
        self._models: dict[Path, _LoadedModel] = {}
        self._load_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self.stats = ProviderStats()
        self.batching = batching
        self.batch_seqs = batch_seqs

    def loaded(self, path: Path) -> _LoadedModel:
        with self._load_lock:
            if path not in self._models:
                llama = load_llama(
                    path,
                    n_ctx=DEFAULT_N_CTX,
                    n_batch=PROMPT_CHUNK,
                    n_ubatch=PROMPT_CHUNK,
                    n_threads=_threads(),
                    n_threads_batch=_threads(),
                    seed=0,
                    verbose=False,
                )
                model = _LoadedModel(llama)
                if self.batching if self.batching is not None else batching_enabled():
                    # Read before the try below, so that a bad value is its ConfigError, not a quiet fallback.
                    seqs = self.batch_seqs or env_int("HONED_GGUF_BATCH_SEQS", 0, minimum=0)
                    wait_ms = env_float("HONED_GGUF_BATCH_WAIT_MS", 0.0, minimum=0.0)
                    try:
                        model.engine = self._engine_for(llama, path, seqs, wait_ms)
                    except Exception as exc:  # e.g. no memory for the second context: serve single-stream
                        warnings.warn(f"gguf/{path.name}: no batched decoding ({exc}); serving one request at "
                                      "a time", RuntimeWarning, stacklevel=2)
                self._models[path] = model
            return self._models[path]

    def _engine_for(self, llama: Any, path: Path, seqs: int, wait_ms: float) -> BatchEngine | None:
        """The batched loop for a loaded model, or None when fewer than two sequences would fit, or when the
        model computes no two sequences in one step as it computes one (then batching would only add work)."""
        seqs = seqs or default_batch_seqs(int(llama.n_ctx()))
        if seqs < 2:
            return None
        stats = EngineStats()
        backend = LlamaBackend(llama, seqs, kv_unified=env_flag("HONED_GGUF_BATCH_UNIFIED", False), stats=stats)
        if not backend.kv_unified and env_flag("HONED_GGUF_BATCH_EXACT", True):
            try:
                width = backend.probe_exact_width()
            except Exception:
                backend.close()
                raise
            if width < 2:
                backend.close()
                warnings.warn(f"gguf/{path.name}: no two sequences decode exactly as one; serving one request at "
                              "a time (HONED_GGUF_BATCH_EXACT=0 batches anyway)", RuntimeWarning, stacklevel=3)
                return None
        return BatchEngine(backend, max_wait_s=wait_ms / 1000, name=path.stem, stats=stats)

    def engine_stats(self) -> dict[str, dict[str, float]]:
        """Each batched loop's counters (`EngineStats`), by model file name."""
        with self._load_lock:
            return {path.name: model.engine.stats.as_dict() for path, model in self._models.items()
                    if model.engine is not None}

    def close(self) -> None:
        """Stop the batched loops (their requests in flight fail) and free the models; a later call reloads.

        For a provider that is done with before the process ends (a benchmark's second provider): freeing the
        models then, rather than while the interpreter shuts down, keeps llama-cpp-python's finalizers quiet.
        """
        with self._load_lock:
            models, self._models = list(self._models.values()), {}
        for model in models:
            if model.engine is not None:
                model.engine.close()
                if model.engine.running:  # still inside a decode after the wait: leave the model alone
                    continue
            with model.lock:
                close = getattr(model.llama, "close", None)
                if close is not None:
                    close()

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
        engine = loaded.engine
        # A forked child has no loop thread, and a loop that has stopped serves nothing: then single-stream.
        if engine is not None and engine.pid == os.getpid() and engine.running:
            batched = self._batched(full_model, loaded, engine, messages, kwargs, n, seed)
            if batched is not None:
                return self._respond(model_response, full_model, *batched)
        with loaded.lock:
            prompt = rendered_prompt(loaded.llama, messages)
            measured = measured_tokens(loaded.llama, messages, prompt)
            kwargs["max_tokens"] = prompt_budget(full_model, measured, loaded.llama.n_ctx(), kwargs["max_tokens"])
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index in range(n):
            call_seed = None if seed is None else int(seed) + index
            with loaded.lock:
                try:
                    out = loaded.complete(prompt, messages=messages, seed=call_seed, **kwargs)
                except ValueError as exc:
                    _raise_if_overflow(full_model, exc)
                    raise
            usage = out.get("usage") or {}
            prompt_tokens = max(prompt_tokens, int(usage.get("prompt_tokens", 0)))
            completion_tokens += int(usage.get("completion_tokens", 0))
            choice = out["choices"][0]
            choices.append(Choices(index=index, finish_reason=choice.get("finish_reason") or "stop",
                                   message=Message(role="assistant", content=choice["message"]["content"])))
        return self._respond(model_response, full_model, choices, prompt_tokens, completion_tokens)

    def _respond(self, model_response: ModelResponse, full_model: str, choices: list, prompt_tokens: int,
                 completion_tokens: int, reused: int = 0, batched: bool = False) -> ModelResponse:
        n = len(choices)
        with self._stats_lock:
            self.stats.calls += n
            self.stats.prompt_tokens += prompt_tokens * n
            self.stats.completion_tokens += completion_tokens
            if batched:
                self.stats.batched_calls += n
                self.stats.reused_prompt_tokens += reused
        model_response.choices = choices
        model_response.model = full_model
        model_response.usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                                     total_tokens=prompt_tokens + completion_tokens)
        return model_response

    def _batched(self, full_model: str, loaded: _LoadedModel, engine: BatchEngine, messages: list,
                 kwargs: dict[str, Any], n: int, seed: Any) -> tuple | None:
        """Serve the call through the batched loop: (choices, prompt tokens, completion tokens, reused, True),
        or None when the request needs the single-stream path."""
        with loaded.render_lock:
            try:
                prompt, captured = capture_completion(loaded.llama, messages, **kwargs)
            except Exception:  # a chat handler this probe does not understand: the single-stream path
                return None
            if isinstance(prompt, list):  # as the single-stream path does: measure, refuse or clamp
                captured["max_tokens"] = prompt_budget(full_model, len(prompt), engine.n_ctx_seq,
                                                       int(kwargs["max_tokens"]))
            request = batch_request(prompt, captured, engine.n_ctx_seq)
            if request is None:
                return None
            seeds = [loaded.next_seed(None if seed is None else int(seed) + index) for index in range(n)]
        tickets = [engine.submit(BatchRequest(**{**request.__dict__, "seed": choice_seed})) for choice_seed in seeds]
        try:
            results: list[BatchResult] = [ticket.result() for ticket in tickets]
        except BaseException:
            for ticket in tickets:
                ticket.cancel()
            raise
        choices = [Choices(index=index, finish_reason=result.finish_reason or "stop",
                           message=Message(role="assistant", content=result.text))
                   for index, result in enumerate(results)]
        prompt_tokens = max(result.prompt_tokens for result in results)
        completion_tokens = sum(result.completion_tokens for result in results)
        reused = sum(result.reused_prompt_tokens for result in results)
        return choices, prompt_tokens, completion_tokens, reused, True

    async def acompletion(self, *args: Any, **kwargs: Any) -> ModelResponse:
        return await asyncio.to_thread(self.completion, *args, **kwargs)


_provider: GGUFProvider | None = None
_register_lock = threading.Lock()


def register_gguf_provider() -> GGUFProvider:
    """Register (once) the `gguf` prefix with litellm and return the process's provider."""
    global _provider
    with _register_lock:
        if _provider is None:
            _provider = GGUFProvider()
        install_gguf_provider(_provider)
        return _provider


def install_gguf_provider(provider: GGUFProvider) -> None:
    """Make `provider` the one litellm calls for `gguf/` models (the benchmark swaps providers this way)."""
    import litellm
    from litellm.utils import custom_llm_setup

    entries = [e for e in litellm.custom_provider_map if e.get("provider") != "gguf"]
    litellm.custom_provider_map = [*entries, {"provider": "gguf", "custom_handler": provider}]
    custom_llm_setup()
