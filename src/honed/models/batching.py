"""Batched decoding for the `gguf/` provider: concurrent requests decoded as sequences of one llama.cpp context.

Why: DSPy's worker threads send requests concurrently, and the single-stream provider serves them one at a
time on one `llama_cpp.Llama`. A llama.cpp decode step can carry one token of each of several sequences (each
with its own positions and KV-cache cells), so the model's weights are read once per step for all of them.
Owning the decode loop also lets each new request start from the longest prompt prefix already in the KV
cache of *any* sequence (the single-stream `Llama` only reuses its own previous prompt), and lets sampling
under a grammar skip most of llama.cpp's per-token grammar work. On a small CPU the shared weight reads buy
less than one might hope, because decoding there is mostly compute-bound (on the 2-core development machine
four sequences cost ~1.3x less per token than one); `benchmarks/provider_speed.py` measures the whole.

Design, and the guarantees it keeps:

- **One thread owns the context.** llama.cpp contexts are not safe to share across threads (a shared
  `Llama` once segfaulted under DSPy's threads), so every call that touches the batched context (decode, KV
  edits, sampling) runs in one decode-loop thread per model. Callers only render and tokenize their prompt,
  then wait on a `Ticket`.
- **Continuous batching, no added latency.** A request is admitted to a free sequence slot at the next step
  boundary. An idle loop starts a lone request at once; `max_wait_s` (default 0) lets an idle loop wait at
  most that long for company. A request arriving while others decode waits at most for the step in flight.
  Each step decodes one token for every generating sequence and prompt tokens of newly admitted ones (in
  the same decode, or in one of their own; see `_step`); a sequence is handed back to its caller in the step
  in which it ends.
- **Each sequence has its own room.** The context holds `n_seq` slots of `n_ctx_seq` positions each (the
  single-stream context size), so the per-sequence prompt checks (`prompt_budget`) are unchanged; requests
  beyond `n_seq` queue.
- **The single-stream semantics.** `BatchEngine._advance` follows `Llama._create_completion` of
  llama-cpp-python 0.3 step by step (stopping criteria, end-of-generation tokens, the multi-byte UTF-8
  hold-back, stop strings, `max_tokens`, the text and the token counts), and each request's sampler is the
  chain `Llama._init_sampler` builds. At temperature 0 with a grammar, sampling takes a shortcut with the same
  result: greedy picks the first highest logit among the tokens the grammar allows, so when the grammar allows
  the overall first highest logit (checked on that one candidate) that is the answer, and otherwise the
  grammar is asked about the highest logits first (`LlamaBackend.grammar_argmax`). llama.cpp's own grammar
  sampler judges the whole vocabulary for every token, milliseconds each on a 50k-token vocabulary: on a
  2-core CPU that is a third of a 135M model's time per token.
- **Prefix reuse that never changes an answer.** Each slot remembers which tokens its KV cells hold, also
  after its request has ended. A new request takes a free slot and starts from the longest common prefix
  with any slot that a fresh evaluation computes the same: whole prompt chunks at fixed positions
  (`honed.models.prefix_reuse`: llama.cpp's numbers for a row depend on how the prompt was cut), from the
  slot's own cells or a copy of another slot's (`llama_memory_seq_cp`), and evaluates only the rest of its
  prompt, in chunks at the same fixed positions. Prefixes are compared token by token, so a changed prompt
  can never be served a stale prefix; a slot whose KV state is in doubt after an error is emptied. The
  engine belongs to one model's context, so a prefix is never looked up across models.
- **The same numbers as single-stream.** By default each sequence has its own KV stream and prompt chunks
  are decoded on their own, as the single-stream `Llama` decodes them (see `LlamaBackend`).
- **Failures stay with their request.** A request whose sampling fails, or that is cancelled, ends alone;
  the others carry on. A failed decode fails the requests that were in that step and empties their slots.

The backend (`LlamaBackend`, or a fake in the unit tests) is all the engine knows about llama.cpp.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import math
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from honed.models.prefix_reuse import chunk_end, reusable_prefix

_NO_SCORES = np.zeros(0, dtype=np.single)
# How many of the highest logits a grammar is asked about before the next tier (then the whole vocabulary).
_GRAMMAR_TIERS = (16, 512)


class CancelledRequest(Exception):
    """The request was cancelled before it ended (its caller gave up waiting)."""


class EngineClosed(RuntimeError):
    """The engine was closed (the process is exiting) before the request ended."""


@dataclass
class BatchRequest:
    """One completion, as `Llama.create_completion` would receive it from the chat handler."""

    prompt: list[int]
    max_tokens: int
    temperature: float = 0.0
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    typical_p: float = 1.0
    repeat_penalty: float = 1.0
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    seed: int = 0
    grammar: Any = None
    stop: list[bytes] = field(default_factory=list)
    stopping_criteria: Any = None


@dataclass
class BatchResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    reused_prompt_tokens: int = 0  # prompt tokens served from the KV cache instead of being evaluated


@dataclass
class EngineStats:
    """What the loop did; `prompt_tokens_reused / prompt_tokens` is the share prefix reuse saved."""

    requests: int = 0
    finished: int = 0
    failed: int = 0
    cancelled: int = 0
    steps: int = 0
    decoded_tokens: int = 0  # tokens in all decode calls (prompt and generated)
    generated_tokens: int = 0
    prompt_tokens: int = 0
    prompt_tokens_evaluated: int = 0
    prompt_tokens_reused: int = 0
    prefix_copies: int = 0  # reuses served by copying another slot's cells
    max_active: int = 0
    grammar_shortcuts: int = 0  # greedy tokens the grammar allowed as they were
    grammar_full: int = 0  # greedy tokens the grammar refused as they were (then asked about the best ones)
    exact_width: int = 0  # generated tokens decoded together at most (0: no limit was probed)
    decode_seconds: float = 0.0  # in llama_decode
    sample_seconds: float = 0.0  # sampling and the per-token checks (stop strings, detokenizing)

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


class Sampler(Protocol):
    def sample(self, index: int) -> int:
        """The next token from the logits of batch row `index` (and accept it into the sampler's state)."""

    def close(self) -> None: ...


class Backend(Protocol):
    """The llama.cpp operations the engine needs; only ever called from the decode-loop thread."""

    n_seq: int
    n_ctx_seq: int
    n_batch: int

    def decode(self, tokens: list[int], positions: list[int], seq_ids: list[int], logits: list[bool]) -> None: ...

    def seq_rm(self, seq: int, p0: int, p1: int) -> None: ...

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None: ...

    def make_sampler(self, request: BatchRequest) -> Sampler: ...

    def is_eog(self, token: int) -> bool: ...

    def detokenize(self, tokens: list[int], prev_tokens: list[int]) -> bytes: ...

    def close(self) -> None: ...


class Ticket:
    """A submitted request: `result()` waits for it; `cancel()` gives it up."""

    def __init__(self, engine: BatchEngine) -> None:
        self._engine = engine
        self._done = threading.Event()
        self._result: BatchResult | None = None
        self._error: BaseException | None = None
        self.cancel_requested = False
        self.submitted = time.monotonic()
        self.started: float | None = None  # when the loop admitted it
        self.finished: float | None = None

    def done(self) -> bool:
        return self._done.is_set()

    def cancel(self) -> None:
        """Ask the loop to drop the request at its next step (a no-op once it has ended)."""
        self._engine._cancel(self)

    def result(self, timeout: float | None = None) -> BatchResult:
        if not self._done.wait(timeout):
            raise TimeoutError("the batched request did not end in time")
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    def _resolve(self, result: BatchResult) -> None:
        self._result, self.finished = result, time.monotonic()
        self._done.set()

    def _reject(self, error: BaseException) -> None:
        self._error, self.finished = error, time.monotonic()
        self._done.set()


@dataclass
class _Slot:
    seq: int
    cached: list[int] = field(default_factory=list)  # the tokens whose KV cells this sequence holds, by position
    evaluated: int = 0  # of `cached`, the leading tokens evaluated as prompt chunks (`honed.models.prefix_reuse`)
    job: _Job | None = None


class _Job:
    """One request in the loop: its prompt still to evaluate, its sampler and its output so far."""

    def __init__(self, request: BatchRequest, ticket: Ticket, order: int) -> None:
        self.request, self.ticket, self.order = request, ticket, order
        self.slot: _Slot | None = None
        self.sampler: Sampler | None = None
        self.todo: list[int] = []
        self.n_past = 0
        self.reused = 0
        self.next_token: int | None = None  # sampled, to be evaluated in the next step
        self.completion: list[int] = []
        self.multibyte_fix = 0


class BatchEngine:
    """Decodes submitted requests together in one background thread (see the module docstring)."""

    def __init__(self, backend: Backend, *, max_wait_s: float = 0.0, share_prefixes: bool = True,
                 name: str = "gguf", stats: EngineStats | None = None) -> None:
        self._backend = backend
        self.n_ctx_seq = backend.n_ctx_seq
        self.n_seq = backend.n_seq
        self.max_wait_s = max_wait_s
        self.share_prefixes = share_prefixes
        self.stats = stats if stats is not None else EngineStats()
        self._cond = threading.Condition()
        self._pending: deque[_Job] = deque()
        self._slots = [_Slot(seq) for seq in range(backend.n_seq)]
        self._order = itertools.count()
        self._closed = False
        self.pid = os.getpid()  # the loop thread exists in this process only
        self._thread = threading.Thread(target=self._run, name=f"honed-batch-{name}", daemon=True)
        self._thread.start()
        _ENGINES.add(self)

    # ------------------------------------------------------------------------------------------ callers

    def submit(self, request: BatchRequest) -> Ticket:
        if not request.prompt:
            raise ValueError("a batched request needs at least one prompt token")
        ticket = Ticket(self)
        with self._cond:
            if self._closed:
                raise EngineClosed("the batched gguf engine is closed")
            self._pending.append(_Job(request, ticket, next(self._order)))
            self.stats.requests += 1
            self._cond.notify_all()
        return ticket

    def _cancel(self, ticket: Ticket) -> None:
        with self._cond:
            ticket.cancel_requested = True
            self._cond.notify_all()

    @property
    def running(self) -> bool:
        """Whether the decode-loop thread is still alive (it frees the context as it ends)."""
        return self._thread.is_alive()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop (requests not yet ended fail with EngineClosed) and free the context."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------------------ the loop

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # however the loop ends, no caller is left waiting and the context is freed
            with self._cond:
                self._closed = True
            self._shutdown()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._closed and not self._pending and not self._any_active():
                    self._cond.wait()
                if self._closed:
                    return
                self._wait_for_company()
                admitted = self._take_admissions()
            try:
                self._reap_cancelled()
                for job in admitted:
                    self._admit(job)
                self._step()
            except Exception as exc:  # a bug in the loop itself: fail what is in flight, keep serving
                for job in admitted:
                    if job.slot is None and not job.ticket.done():
                        job.ticket._reject(exc)
                with contextlib.suppress(Exception):
                    self._fail_all(exc)

    def _any_active(self) -> bool:
        return any(slot.job is not None for slot in self._slots)

    def _wait_for_company(self) -> None:
        """An idle loop may wait up to `max_wait_s` after the first arrival for more (caller holds the lock)."""
        if self.max_wait_s <= 0 or self._any_active() or not self._pending:
            return
        deadline = self._pending[0].ticket.submitted + self.max_wait_s
        while not self._closed and len(self._pending) < len(self._slots):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._cond.wait(left)

    def _take_admissions(self) -> list[_Job]:
        """Pop as many pending requests as there are free slots, skipping cancelled ones (lock held)."""
        free = sum(slot.job is None for slot in self._slots)
        taken: list[_Job] = []
        while self._pending and len(taken) < free:
            job = self._pending.popleft()
            if job.ticket.cancel_requested:
                self.stats.cancelled += 1
                job.ticket._reject(CancelledRequest("cancelled before it started"))
                continue
            taken.append(job)
        return taken

    def _reap_cancelled(self) -> None:
        for slot in self._slots:
            if slot.job is not None and slot.job.ticket.cancel_requested:
                self.stats.cancelled += 1
                self._end(slot.job, error=CancelledRequest("cancelled while decoding"))

    def _admit(self, job: _Job) -> None:
        """Give `job` a free slot, starting from the longest prompt prefix already in the KV cache that a
        fresh evaluation would compute the same (whole prompt chunks: `honed.models.prefix_reuse`)."""
        prompt = job.request.prompt
        chunk = self._backend.n_batch
        free = [slot for slot in self._slots if slot.job is None]

        reusable = {slot.seq: reusable_prefix(slot.cached, slot.evaluated, prompt, chunk) if self.share_prefixes
                    else 0 for slot in self._slots}
        # The free slot whose own cells serve the most; on a tie the lowest sequence id, so that the busy
        # sequences stay consecutive (see `_step`: llama.cpp decodes a run of consecutive ids in one pass).
        dst = max(free, key=lambda slot: (reusable[slot.seq], -slot.seq))
        keep = reusable[dst.seq]
        src, best = dst, keep
        for slot in self._slots:
            if reusable[slot.seq] > best:
                src, best = slot, reusable[slot.seq]
        if best - keep < getattr(self._backend, "min_copy", 1):  # a copy would not pay for itself
            src, best = dst, keep
        backend = self._backend
        try:
            if src is dst:
                backend.seq_rm(dst.seq, best, -1)
            else:
                backend.seq_rm(dst.seq, 0, -1)
                if best > 0:
                    backend.seq_cp(src.seq, dst.seq, 0, best)
                    # Across KV streams llama.cpp copies the whole buffer: drop what lies past the prefix.
                    backend.seq_rm(dst.seq, best, -1)
                    self.stats.prefix_copies += 1
            dst.cached = list(prompt[:best])
            dst.evaluated = best
        except Exception as exc:  # the slot's cells are in doubt: empty it, fail this request only
            self._wipe(dst)
            self.stats.failed += 1
            job.ticket._reject(exc)
            return
        dst.job, job.slot = job, dst
        job.todo, job.n_past, job.reused = list(prompt[best:]), best, best
        job.ticket.started = time.monotonic()
        self.stats.prompt_tokens += len(prompt)
        self.stats.prompt_tokens_reused += best
        self.stats.max_active = max(self.stats.max_active, sum(s.job is not None for s in self._slots))
        try:
            job.sampler = backend.make_sampler(job.request)
        except Exception as exc:
            self._end(job, error=exc)

    def _step(self) -> None:
        """Decode what is due, then sample each sequence whose logits came out.

        With a backend that mixes (`mixed_batches`), one decode carries a token for each generating sequence
        and then prompt chunks up to `n_batch`. Otherwise (separate KV streams) each prompt chunk is decoded
        on its own, exactly as the single-stream `Llama` decodes it, and the generating sequences together in
        a second decode: llama.cpp would split a mixed batch per stream anyway, and cutting a prompt into
        other pieces than the single-stream path does can change the low bits of its numbers. The generating
        sequences go in groups of at most the backend's `exact_width`: the most rows a decode of this model
        computes with the numbers of a one-row decode (see `LlamaBackend.probe_exact_width`).
        """
        jobs = sorted((slot.job for slot in self._slots if slot.job is not None), key=lambda job: job.order)
        # Generating rows in sequence-id order: with a KV stream per sequence llama.cpp's `split_equal` puts
        # only consecutive, increasing sequence ids in one pass (`seq_id == last_seq_id + 1`), and each pass
        # reads every weight again. In arrival order a 13-row step was cut into about 8 passes.
        generating = sorted((job for job in jobs if job.next_token is not None),
                            key=lambda job: job.slot.seq if job.slot is not None else -1)
        prompting = [job for job in jobs if job.todo]
        if getattr(self._backend, "mixed_batches", True):
            self._decode(generating, prompting, self._backend.n_batch)
            return
        if prompting:
            self._decode([], prompting[:1], self._backend.n_batch)
        generating = [job for job in generating if job.slot is not None]
        width = max(1, getattr(self._backend, "exact_width", len(generating) or 1))
        for start in range(0, len(generating), width):
            self._decode(generating[start:start + width], [], 0)

    def _decode(self, generating: list[_Job], prompting: list[_Job], prompt_budget: int) -> None:
        """One llama_decode: each of `generating`'s next token, then chunks of `prompting`'s prompts."""
        tokens: list[int] = []
        positions: list[int] = []
        seqs: list[int] = []
        logits: list[bool] = []
        fed: list[tuple[_Job, list[int], bool]] = []  # (job, tokens evaluated for it, from its prompt)
        rows: list[tuple[_Job, int]] = []  # (job, batch row of its logits)
        for job in generating:
            assert job.slot is not None and job.next_token is not None
            rows.append((job, len(tokens)))
            tokens.append(job.next_token)
            positions.append(job.n_past)
            seqs.append(job.slot.seq)
            logits.append(True)
            fed.append((job, [job.next_token], False))
            job.next_token = None
        budget = min(prompt_budget, self._backend.n_batch - len(tokens))
        for job in prompting:
            if budget <= 0:
                break
            assert job.slot is not None
            chunk = job.todo[:chunk_end(job.n_past, budget, self._backend.n_batch)]
            for offset, token in enumerate(chunk):
                tokens.append(token)
                positions.append(job.n_past + offset)
                seqs.append(job.slot.seq)
                logits.append(False)
            if len(chunk) == len(job.todo):
                logits[-1] = True
                rows.append((job, len(tokens) - 1))
            fed.append((job, chunk, True))
            budget -= len(chunk)
        if not tokens:
            return
        started = time.perf_counter()
        try:
            self._backend.decode(tokens, positions, seqs, logits)
        except Exception as exc:
            for job, _, _ in fed:
                self._end(job, error=exc, wipe=True)
            return
        decoded = time.perf_counter()
        self.stats.decode_seconds += decoded - started
        self.stats.steps += 1
        self.stats.decoded_tokens += len(tokens)
        for job, chunk, from_prompt in fed:
            assert job.slot is not None
            job.n_past += len(chunk)
            job.slot.cached.extend(chunk)
            if from_prompt:
                job.slot.evaluated = job.n_past
                del job.todo[:len(chunk)]
                self.stats.prompt_tokens_evaluated += len(chunk)
        for job, row in rows:
            if job.slot is None:  # ended meanwhile
                continue
            try:
                assert job.sampler is not None
                token = job.sampler.sample(row)
                self._advance(job, token)
            except Exception as exc:
                self._end(job, error=exc, wipe=True)
        self.stats.sample_seconds += time.perf_counter() - decoded

    def _advance(self, job: _Job, token: int) -> None:
        """What `Llama._create_completion` does with each sampled token (llama-cpp-python 0.3)."""
        request, backend = job.request, self._backend
        assert job.slot is not None
        prompt = request.prompt
        # `Llama.generate` asks the stopping criteria about the tokens evaluated so far, before yielding.
        criteria = request.stopping_criteria
        if criteria is not None and criteria(np.asarray(job.slot.cached, dtype=np.intc), _NO_SCORES):
            self._finish(job, backend.detokenize(job.completion, prompt), "stop")
            return
        if backend.is_eog(token):
            self._finish(job, backend.detokenize(job.completion, prompt), "stop")
            return
        job.completion.append(token)
        self.stats.generated_tokens += 1
        all_text = backend.detokenize(job.completion, prompt)
        for k, char in enumerate(all_text[-3:]):  # an incomplete multi-byte character: hold the checks back
            k = 3 - k
            for num, pattern in ((2, 192), (3, 224), (4, 240)):
                if num > k and pattern & char == pattern:
                    job.multibyte_fix = num - k
        if job.multibyte_fix > 0:
            job.multibyte_fix -= 1
            self._continue(job, token, backend.detokenize(job.completion, prompt))
            return
        stops = [stop for stop in request.stop if stop in all_text]
        if stops:
            self._finish(job, all_text[:all_text.index(stops[0])], "stop")
            return
        if len(job.completion) >= request.max_tokens:
            self._finish(job, all_text, "length")
            return
        self._continue(job, token, all_text)

    def _continue(self, job: _Job, token: int, text: bytes) -> None:
        if job.n_past >= self.n_ctx_seq:  # no position left in this sequence's room
            self._finish(job, text, "length")
            return
        job.next_token = token

    def _finish(self, job: _Job, text: bytes, reason: str) -> None:
        self.stats.finished += 1
        result = BatchResult(text=text.decode("utf-8", errors="ignore"), finish_reason=reason,
                             prompt_tokens=len(job.request.prompt), completion_tokens=len(job.completion),
                             reused_prompt_tokens=job.reused)
        self._release(job)
        job.ticket._resolve(result)

    def _end(self, job: _Job, *, error: BaseException, wipe: bool = False) -> None:
        """End `job` with `error`; `wipe` empties its slot when its KV cells may not match `cached`."""
        if not isinstance(error, CancelledRequest):
            self.stats.failed += 1
        if wipe and job.slot is not None:
            self._wipe(job.slot)
        self._release(job)
        job.ticket._reject(error)

    def _release(self, job: _Job) -> None:
        if job.sampler is not None:
            sampler, job.sampler = job.sampler, None
            with contextlib.suppress(Exception):  # a sampler that cannot be freed must not keep the slot
                sampler.close()
        if job.slot is not None:
            job.slot.job = None
            job.slot = None

    def _wipe(self, slot: _Slot) -> None:
        """Empty a slot whose KV cells may not be what `cached` says (after an error)."""
        slot.cached, slot.evaluated = [], 0
        # On failure there is nothing better to do: a later decode on this slot fails and wipes it again.
        with contextlib.suppress(Exception):
            self._backend.seq_rm(slot.seq, 0, -1)

    def _fail_all(self, exc: BaseException) -> None:
        for slot in self._slots:
            if slot.job is not None:
                self._end(slot.job, error=exc, wipe=True)
            else:
                self._wipe(slot)

    def _shutdown(self) -> None:
        closed = EngineClosed("the batched gguf engine closed before the request ended")
        with self._cond:
            pending, self._pending = list(self._pending), deque()
        for job in pending:
            job.ticket._reject(closed)
        for slot in self._slots:
            if slot.job is not None:
                with contextlib.suppress(Exception):
                    self._end(slot.job, error=closed)
        self._backend.close()


_ENGINES: weakref.WeakSet[BatchEngine] = weakref.WeakSet()


@atexit.register
def _close_engines() -> None:
    """Stop every decode loop before the interpreter frees the models under it."""
    for engine in list(_ENGINES):
        engine.close(timeout=5.0)


# ---------------------------------------------------------------------------------------------- llama.cpp


class LlamaBackend:
    """A second llama.cpp context on a loaded `Llama`'s model, holding `n_seq` sequences of `n_ctx` positions.

    The context copies the `Llama`'s own parameters (threads, batch sizes, attention and RoPE settings). By
    default each sequence has its own KV stream (`kv_unified=False`): its cells then sit at the same places
    as in the single-stream context, so attention sums the same numbers in the same order and the logits are
    the single-stream ones, and a sequence attends only to its own cells. Copying a prefix between streams
    copies the whole stream's buffer (llama.cpp supports no partial cross-stream copy), so it is only done
    for a gain of `min_copy` tokens or more. `kv_unified=True` shares one pool of cells: prefix copies are
    free and prompt chunks ride in the same decode as generated tokens, but a sequence's cells land wherever
    there is room, which changes the summation order in attention and so the low bits of the logits (an
    answer can then differ where two tokens are nearly tied).
    """

    def __init__(self, llama: Any, n_seq: int, *, kv_unified: bool = False, greedy_shortcut: bool = True,
                 stats: EngineStats | None = None) -> None:
        import llama_cpp
        from llama_cpp import _internals
        from llama_cpp._utils import suppress_stdout_stderr

        self._llama_cpp = llama_cpp
        self._llama = llama
        self._model = llama._model
        self.n_seq = n_seq
        self.n_ctx_seq = int(llama.n_ctx())
        self.n_batch = int(llama.n_batch)
        self.n_vocab = int(llama.n_vocab())
        self.kv_unified = kv_unified
        self.mixed_batches = kv_unified
        self.min_copy = 1 if kv_unified else 16
        self.exact_width = n_seq  # until `probe_exact_width` says otherwise
        self.greedy_shortcut = greedy_shortcut
        self.stats = stats if stats is not None else EngineStats()
        params = llama_cpp.llama_context_params.from_buffer_copy(llama.context_params)
        params.n_ctx = n_seq * self.n_ctx_seq
        params.n_seq_max = n_seq
        params.kv_unified = kv_unified
        with suppress_stdout_stderr(disable=bool(llama.verbose)):
            self.context = _internals.LlamaContext(model=self._model, params=params, verbose=bool(llama.verbose))
        self._memory = self.context.memory
        self._batch = llama_cpp.llama_batch_init(self.n_batch, 0, 1)
        b = self._batch
        self._tokens = np.ctypeslib.as_array(b.token, shape=(self.n_batch,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(self.n_batch,))
        self._n_seq_id = np.ctypeslib.as_array(b.n_seq_id, shape=(self.n_batch,))
        self._logits = np.ctypeslib.as_array(b.logits, shape=(self.n_batch,))
        self._n_seq_id[:] = 1
        # Candidate buffers for applying a grammar outside a sampler chain: the whole vocabulary, and one token.
        self._candidates = (llama_cpp.llama_token_data * self.n_vocab)()
        self._candidates_np = np.ctypeslib.as_array(self._candidates)
        self._ids = np.arange(self.n_vocab, dtype=np.int32)
        self._candidates_array = llama_cpp.llama_token_data_array(
            data=self._candidates, size=self.n_vocab, selected=-1, sorted=False)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._closed = False

    def decode(self, tokens: list[int], positions: list[int], seq_ids: list[int], logits: list[bool]) -> None:
        n = len(tokens)
        if n > self.n_batch:
            raise ValueError(f"{n} tokens exceed the batch size {self.n_batch}")
        b = self._batch
        b.n_tokens = n
        self._tokens[:n] = tokens
        self._pos[:n] = positions
        self._logits[:n] = logits
        seq_id = b.seq_id
        for i, seq in enumerate(seq_ids):
            seq_id[i][0] = seq
        code = self._llama_cpp.llama_decode(self.context.ctx, b)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code}")

    def probe_exact_width(self, most: int = 32) -> int:
        """The most sequences (up to `most`) a decode step can carry with every row's logits equal to those
        of a one-sequence step; the loop decodes generated tokens in groups no wider (`BatchEngine._step`).

        Why: llama.cpp's CPU kernels for some weight types take another code path once a matrix product has
        several rows (measured: Q4_K_M Qwen2.5 models differ by up to 0.47 in a logit from 4 rows on; Q4_1
        SmolLM2 does not, up to 16 rows), and then a greedy answer can change wherever two tokens are nearly
        tied, with which requests happen to share a step. A short prompt is evaluated on each sequence alone
        (in chunks of `n_batch`), so every sequence holds the same cells (a copy across KV streams would copy
        whole buffers, far dearer); then one step at each width from 2 up, each row compared with the
        one-sequence step, until the first that differs. The KV cache is left empty. Sets and returns
        `exact_width`.
        """
        prompt = [int(t) for t in self._llama.tokenize(b"The quick brown fox", add_bos=True)]
        n = len(prompt)
        widest = max(1, min(self.n_seq, most, self.n_batch))
        exact = 1
        try:
            reference: np.ndarray | None = None
            for width in range(1, widest + 1):
                # The new sequence's prompt on its own: the same computation, so the same cells as the others.
                self.prefill(width - 1, prompt)
                self.decode([prompt[-1]] * width, [n] * width, list(range(width)), [True] * width)
                rows = [self.row_logits(row).copy() for row in range(width)]
                for seq in range(width):
                    self.seq_rm(seq, n, -1)
                if reference is None:
                    reference = rows[0]
                elif all(np.array_equal(row, reference) for row in rows):
                    exact = width
                else:
                    break
        finally:
            for seq in range(widest):
                self.seq_rm(seq, 0, -1)
        self.exact_width = self.stats.exact_width = exact
        return exact

    def prefill(self, seq: int, prompt: list[int]) -> None:
        """Evaluate `prompt` on sequence `seq` from position 0, in chunks of `n_batch`, asking no logits."""
        for start in range(0, len(prompt), self.n_batch):
            chunk = prompt[start:start + self.n_batch]
            self.decode(chunk, list(range(start, start + len(chunk))), [seq] * len(chunk), [False] * len(chunk))

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        if not self._llama_cpp.llama_memory_seq_rm(self._memory, seq, p0, p1):
            raise RuntimeError(f"llama.cpp could not remove positions {p0}..{p1} of sequence {seq}")

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        if self.kv_unified:
            self._llama_cpp.llama_memory_seq_cp(self._memory, src, dst, p0, p1)
            return
        # Across streams llama.cpp copies only whole buffers (anything else fails an assertion and aborts).
        if p0 > 0:
            raise ValueError("a cross-stream prefix copy must start at position 0")
        self._llama_cpp.llama_memory_seq_cp(self._memory, src, dst, -1, -1)
        self.seq_rm(dst, p1, -1)

    def row_logits(self, index: int) -> np.ndarray:
        pointer = self._llama_cpp.llama_get_logits_ith(self.context.ctx, index)
        if not pointer:
            raise RuntimeError(f"no logits for batch row {index}")
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))

    def grammar_allows(self, grammar: Any, token: int, logit: float) -> bool:
        one = self._one
        one[0].id, one[0].logit, one[0].p = token, logit, 0.0
        array = self._one_array
        array.size, array.selected, array.sorted = 1, -1, False
        self._llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        return not (math.isinf(one[0].logit) and one[0].logit < 0)

    def grammar_argmax(self, grammar: Any, logits: np.ndarray) -> int:
        """The first highest-logit token the grammar allows: what `grammar -> greedy` in a chain picks.

        The grammar judges each candidate on its own, so it is asked about the highest logits first (every
        token at or above the k-th highest, ties included) and about the whole vocabulary only if none of
        those is allowed; among the allowed, the highest logit wins and the lowest id breaks a tie, as in
        llama.cpp's greedy sampler.
        """
        for k in _GRAMMAR_TIERS:
            if k >= self.n_vocab:
                break
            threshold = np.partition(logits, self.n_vocab - k)[self.n_vocab - k]
            ids = np.flatnonzero(logits >= threshold).astype(np.int32)
            token = self._best_allowed(grammar, ids, logits[ids])
            if token is not None:
                return token
        token = self._best_allowed(grammar, self._ids, logits)
        return int(np.argmax(logits)) if token is None else token  # nothing allowed: what greedy would pick

    def _best_allowed(self, grammar: Any, ids: np.ndarray, values: np.ndarray) -> int | None:
        """Apply the grammar to the candidates `ids`; the best allowed one (lowest id on a tie), or None."""
        n = len(ids)
        candidates = self._candidates_np[:n]
        candidates["id"] = ids
        candidates["logit"] = values
        candidates["p"] = 0.0
        array = self._candidates_array
        array.size, array.selected, array.sorted = n, -1, False
        self._llama_cpp.llama_sampler_apply(grammar, ctypes.byref(array))
        judged = candidates["logit"]
        allowed = judged > -np.inf
        if not allowed.any():
            return None
        best = judged[allowed].max()
        return int(candidates["id"][allowed & (judged == best)].min())

    def make_sampler(self, request: BatchRequest) -> Sampler:
        no_penalty = (request.repeat_penalty == 1.0 and request.frequency_penalty == 0.0
                      and request.presence_penalty == 0.0)
        if self.greedy_shortcut and request.temperature == 0.0 and no_penalty:
            return _GreedySampler(self, request.grammar)
        return _ChainSampler(self, request)

    def is_eog(self, token: int) -> bool:
        return bool(self._llama_cpp.llama_vocab_is_eog(self._model.vocab, token))

    def detokenize(self, tokens: list[int], prev_tokens: list[int]) -> bytes:
        return self._llama.detokenize(tokens, prev_tokens=prev_tokens)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._llama_cpp.llama_batch_free(self._batch)
        self.context.close()


class _GreedySampler:
    """Temperature 0 without penalties: the chain `penalties (a no-op) -> grammar -> greedy`, computed as
    argmax with the grammar checked on the winner first (see the module docstring)."""

    def __init__(self, backend: LlamaBackend, grammar: Any) -> None:
        self._backend = backend
        self._grammar = None
        if grammar is not None:
            lib = backend._llama_cpp
            self._grammar = lib.llama_sampler_init_grammar(
                backend._model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8"))
            if not self._grammar:
                raise ValueError("llama.cpp could not initialise the grammar")

    def sample(self, index: int) -> int:
        backend = self._backend
        logits = backend.row_logits(index)
        token = int(np.argmax(logits))
        if self._grammar is not None:
            if backend.grammar_allows(self._grammar, token, float(logits[token])):
                backend.stats.grammar_shortcuts += 1
            else:
                backend.stats.grammar_full += 1
                token = backend.grammar_argmax(self._grammar, logits)
            backend._llama_cpp.llama_sampler_accept(self._grammar, token)
        return token

    def close(self) -> None:
        if self._grammar:
            self._backend._llama_cpp.llama_sampler_free(self._grammar)
            self._grammar = None


class _ChainSampler:
    """The sampler chain `Llama._init_sampler` builds (llama-cpp-python 0.3), sampling from one batch row."""

    def __init__(self, backend: LlamaBackend, request: BatchRequest) -> None:
        from llama_cpp import _internals

        self._backend = backend
        llama = backend._llama
        chain = _internals.LlamaSampler()
        chain.add_penalties(n_vocab=backend.n_vocab, penalty_last_n=int(llama.last_n_tokens_size),
                            penalty_repeat=request.repeat_penalty, penalty_freq=request.frequency_penalty,
                            penalty_present=request.presence_penalty)
        if request.grammar is not None:
            chain.add_grammar(backend._model, request.grammar)
        if request.temperature < 0.0:
            chain.add_dist(request.seed)
        elif request.temperature == 0.0:
            chain.add_greedy()
        else:
            chain.add_top_k(request.top_k)
            chain.add_typical(request.typical_p, 1)
            chain.add_top_p(request.top_p, 1)
            chain.add_min_p(request.min_p, 1)
            chain.add_temp(request.temperature)
            chain.add_dist(request.seed)
        self._chain: Any = chain

    def sample(self, index: int) -> int:
        return int(self._chain.sample(self._backend.context, index))

    def close(self) -> None:
        if self._chain is not None:
            self._chain.close()
            self._chain = None
