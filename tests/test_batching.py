"""The batched decode loop (`honed.models.batching`) over a fake llama.cpp, and its wiring in the provider.

The fake model's next token is a function of the *whole* token history of a sequence as its KV cache holds
it, and the fake KV cache refuses positions out of order, so a misplaced, stale or missing prefix shows up as
a wrong answer or an error rather than passing silently.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import litellm
import pytest

from honed.errors import ContextLengthExceeded, find_cause
from honed.models import gguf
from honed.models.batching import (
    BatchEngine,
    BatchRequest,
    CancelledRequest,
    EngineClosed,
)
from honed.models.prefix_reuse import chunk_end, common_prefix, reusable_prefix

EOG = 0
GARBAGE = 99  # what the fake model says when its KV cache holds no known prompt


def piece(token: int) -> bytes:
    return b"?" if token == GARBAGE else bytes([ord("a") + (token - 1) % 26])


class FakeBackend:
    """A scripted 'model' with a checking KV cache: `script[prompt]` is the continuation of `prompt`."""

    def __init__(self, script: dict[tuple[int, ...], list[int]], n_seq: int = 3, n_ctx_seq: int = 64,
                 n_batch: int = 16, delay: float = 0.0, mixed_batches: bool = True, min_copy: int = 1) -> None:
        self.script, self.n_seq, self.n_ctx_seq, self.n_batch, self.delay = script, n_seq, n_ctx_seq, n_batch, delay
        self.mixed_batches, self.min_copy = mixed_batches, min_copy
        self.kv: dict[int, dict[int, int]] = {seq: {} for seq in range(n_seq)}
        self.rows: dict[int, tuple[int, int]] = {}
        self.batches: list[list[int]] = []  # the sequence ids of each decode
        self.row_seqs: list[list[int]] = []  # each decode's sequence id per row, in batch order
        self.runs: list[tuple[int, int, int]] = []  # (sequence, first position, tokens) per sequence per decode
        self.fail_next_decode = False
        self.closed = False
        self.lock = threading.Lock()
        self.thread_ids: set[int] = set()

    def _touch(self) -> None:
        self.thread_ids.add(threading.get_ident())

    def decode(self, tokens: list[int], positions: list[int], seq_ids: list[int], logits: list[bool]) -> None:
        self._touch()
        assert len(tokens) <= self.n_batch
        if self.fail_next_decode:
            self.fail_next_decode = False
            for seq, pos in zip(seq_ids, positions, strict=True):  # a half-done decode leaves junk behind
                self.kv[seq][pos] = GARBAGE
            raise RuntimeError("llama_decode returned -3")
        if self.delay:
            time.sleep(self.delay)
        if not self.mixed_batches:  # one prompt chunk alone, or one generated token per sequence
            assert len(set(seq_ids)) == 1 or len(set(seq_ids)) == len(seq_ids), seq_ids
        for token, pos, seq in zip(tokens, positions, seq_ids, strict=True):
            cells = self.kv[seq]
            assert pos not in cells and pos == len(cells), f"seq {seq}: position {pos} after {len(cells)} cells"
            assert pos < self.n_ctx_seq
            cells[pos] = token
        self.rows = {i: (seq_ids[i], positions[i]) for i, wanted in enumerate(logits) if wanted}
        for seq in sorted(set(seq_ids)):  # each sequence's run of tokens in this decode: (first position, count)
            mine = [pos for pos, s in zip(positions, seq_ids, strict=True) if s == seq]
            self.runs.append((seq, mine[0], len(mine)))
        self.batches.append(sorted(set(seq_ids)))
        self.row_seqs.append(list(seq_ids))

    def seq_rm(self, seq: int, p0: int, p1: int) -> None:
        self._touch()
        end = p1 if p1 >= 0 else 1 << 30
        self.kv[seq] = {pos: t for pos, t in self.kv[seq].items() if not p0 <= pos < end}

    def seq_cp(self, src: int, dst: int, p0: int, p1: int) -> None:
        self._touch()
        for pos, token in self.kv[src].items():
            # Across separate KV streams llama.cpp copies the whole buffer, whatever range was asked for.
            if p0 <= pos < p1 or not self.mixed_batches:
                self.kv[dst][pos] = token

    def next_token(self, index: int) -> int:
        seq, pos = self.rows[index]
        history = tuple(self.kv[seq][p] for p in range(pos + 1))
        for prompt, continuation in self.script.items():
            if history[:len(prompt)] == prompt:
                done = len(history) - len(prompt)
                return continuation[done] if done < len(continuation) else EOG
        return GARBAGE

    def make_sampler(self, request: BatchRequest) -> Any:
        return FakeSampler(self, request)

    def is_eog(self, token: int) -> bool:
        return token == EOG

    def detokenize(self, tokens: list[int], prev_tokens: list[int]) -> bytes:
        return b"".join(piece(t) for t in tokens)

    def close(self) -> None:
        self.closed = True


class FakeSampler:
    """Greedy over the fake model; `request.grammar` may be a callable that fails a request on purpose."""

    def __init__(self, backend: FakeBackend, request: BatchRequest) -> None:
        self.backend, self.request, self.sampled = backend, request, 0

    def sample(self, index: int) -> int:
        self.sampled += 1
        if callable(self.request.grammar):
            self.request.grammar(self.sampled)
        return self.backend.next_token(index)

    def close(self) -> None:
        pass


def text_of(tokens: list[int]) -> str:
    return b"".join(piece(t) for t in tokens).decode()


def request(prompt: list[int], max_tokens: int = 32, **extra: Any) -> BatchRequest:
    return BatchRequest(prompt=list(prompt), max_tokens=max_tokens, **extra)


@pytest.fixture
def make_engine():
    engines: list[BatchEngine] = []

    def make(script: dict[tuple[int, ...], list[int]], **options: Any) -> tuple[BatchEngine, FakeBackend]:
        engine_options = {k: options.pop(k) for k in ("max_wait_s", "share_prefixes") if k in options}
        backend = FakeBackend(script, **options)
        engine = BatchEngine(backend, **engine_options)
        engines.append(engine)
        return engine, backend

    yield make
    for engine in engines:
        engine.close()


# ------------------------------------------------------------------------------------------------- batching


@pytest.mark.parametrize("mixed", [True, False])
def test_concurrent_requests_of_different_lengths_each_get_their_own_answer(make_engine, mixed):
    script = {(1, 2, 3 + i, 4): [5 + i] * (2 + 3 * i) for i in range(6)}  # answers of 2 to 17 tokens
    engine, backend = make_engine(script, n_seq=3, delay=0.002, mixed_batches=mixed)
    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(lambda prompt: engine.submit(request(list(prompt))).result(5), script))
    for (prompt, answer), result in zip(script.items(), results, strict=True):
        assert result.text == text_of(answer)
        assert result.finish_reason == "stop"
        assert (result.prompt_tokens, result.completion_tokens) == (len(prompt), len(answer))
    assert max(len(seqs) for seqs in backend.batches) > 1, "requests were decoded together"
    assert engine.stats.max_active <= 3
    assert backend.thread_ids == {engine._thread.ident}, "only the loop thread touches the context"


def test_generated_tokens_are_decoded_in_groups_no_wider_than_the_exact_width(make_engine):
    script = {(2, i): [3 + i] * 6 for i in range(4)}
    engine, backend = make_engine(script, n_seq=4, delay=0.002, mixed_batches=False)
    backend.exact_width = 2  # what `LlamaBackend.probe_exact_width` finds for a Q4_K_M model
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda prompt: engine.submit(request(list(prompt))).result(5), script))
    assert [r.text for r in results] == [text_of(answer) for answer in script.values()]
    assert engine.stats.max_active > 2, "more sequences were active than one group holds"
    assert max(len(seqs) for seqs in backend.batches) == 2


def test_generating_rows_go_in_sequence_id_order_whatever_order_requests_came_in(make_engine):
    """llama.cpp decodes one pass per run of consecutive, increasing sequence ids (a KV stream each), so
    rows in arrival order cost several passes: every generating decode lists its sequences in id order."""
    script = {(9, i): [2 + i] * (3 + (7 * i) % 11) for i in range(12)}  # answers of 3 to 13 tokens
    engine, backend = make_engine(script, n_seq=4, delay=0.002, mixed_batches=False)
    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(lambda prompt: engine.submit(request(list(prompt))).result(5), script))
    assert [r.text for r in results] == [text_of(answer) for answer in script.values()]
    generating = [seqs for seqs in backend.row_seqs if len(seqs) > 1 and len(set(seqs)) == len(seqs)]
    assert generating, "sequences were decoded together"
    assert all(seqs == sorted(seqs) for seqs in generating)


def test_more_requests_than_sequences_queue_and_all_finish(make_engine):
    script = {(7, i): [1 + i % 20] * 5 for i in range(10)}
    engine, _ = make_engine(script, n_seq=2)
    tickets = [engine.submit(request(list(prompt))) for prompt in script]
    assert [t.result(5).text for t in tickets] == [text_of(answer) for answer in script.values()]
    assert engine.stats.max_active == 2 and engine.stats.finished == 10


@pytest.mark.parametrize("mixed", [True, False])
def test_a_long_prompt_is_evaluated_in_chunks_while_another_sequence_keeps_generating(make_engine, mixed):
    long_prompt = tuple(range(1, 41))  # 40 tokens through a 16-token batch
    script = {(50,): [3] * 20, long_prompt: [4, 5]}
    engine, backend = make_engine(script, n_batch=16, delay=0.002, mixed_batches=mixed)
    first = engine.submit(request([50]))
    while engine.stats.generated_tokens < 2:
        time.sleep(0.001)
    second = engine.submit(request(list(long_prompt)))
    assert second.result(5).text == "de"
    assert first.result(5).text == text_of([3] * 20)
    assert engine.stats.prompt_tokens_evaluated == 41


def test_stop_strings_max_tokens_and_stopping_criteria_follow_llama_cpp_python():
    script = {(1,): [1, 2, 3, 4, 5, 6]}  # "abcdef"
    backend = FakeBackend(script)
    engine = BatchEngine(backend)
    try:
        stopped = engine.submit(request([1], stop=[b"zz", b"cd"])).result(5)
        assert (stopped.text, stopped.finish_reason, stopped.completion_tokens) == ("ab", "stop", 4)
        cut = engine.submit(request([1], max_tokens=3)).result(5)
        assert (cut.text, cut.finish_reason, cut.completion_tokens) == ("abc", "length", 3)
        ended = engine.submit(request([1])).result(5)
        assert (ended.text, ended.finish_reason, ended.completion_tokens) == ("abcdef", "stop", 6)
        # Llama.generate asks the criteria about the tokens *evaluated* so far (the prompt, then the answer).
        seen: list[list[int]] = []

        def criteria(tokens: Any, scores: Any) -> bool:
            seen.append([int(t) for t in tokens])
            return int(tokens[-1]) == 3

        halted = engine.submit(request([1], stopping_criteria=criteria)).result(5)
        assert (halted.text, halted.finish_reason) == ("abc", "stop")
        assert seen[0] == [1] and seen[-1] == [1, 1, 2, 3]
    finally:
        engine.close()


def test_multibyte_characters_are_held_back_until_complete():
    """While the text ends in an incomplete UTF-8 character, the stop and max_tokens checks wait a token,
    as in `_create_completion` (whose check looks at the last three bytes)."""

    class Utf8Backend(FakeBackend):
        def detokenize(self, tokens: list[int], prev_tokens: list[int]) -> bytes:
            pieces = {1: b"a", 2: "é".encode()[:1], 3: "é".encode()[1:], 4: b"b"}
            return b"".join(pieces[t] for t in tokens)

    engine = BatchEngine(Utf8Backend({(9,): [1, 1, 2, 3, 4]}))
    try:
        held = engine.submit(request([9], max_tokens=3)).result(5)
        assert (held.text, held.finish_reason, held.completion_tokens) == ("aaé", "length", 4)
        assert engine.submit(request([9], stop=["é".encode()])).result(5).text == "aa"
    finally:
        engine.close()


# ------------------------------------------------------------------------------------------------- latency


def test_a_lone_request_starts_at_once(make_engine):
    engine, _ = make_engine({(1,): [2]})
    for _ in range(3):
        ticket = engine.submit(request([1]))
        ticket.result(5)
        assert ticket.started is not None and ticket.started - ticket.submitted < 0.1


def test_an_idle_loop_waits_for_company_no_longer_than_its_bound(make_engine):
    engine, backend = make_engine({(1,): [2], (3,): [4]}, max_wait_s=0.3)
    lone = engine.submit(request([1]))
    lone.result(5)
    assert lone.started is not None
    assert 0.25 <= lone.started - lone.submitted < 0.6
    first = engine.submit(request([1]))
    time.sleep(0.05)
    second = engine.submit(request([3]))
    assert (first.result(5).text, second.result(5).text) == ("b", "d")
    assert first.started is not None and first.started - first.submitted < 0.45  # the bound, plus slack
    assert [0, 1] in backend.batches or [0, 1, 2] in backend.batches, "the two arrivals shared a decode"


# ------------------------------------------------------------------------------------------------- failures


def test_a_cancelled_request_does_not_disturb_the_others(make_engine):
    script = {(1, i): [2 + i] * 30 for i in range(3)}
    engine, _ = make_engine(script, delay=0.003)
    tickets = [engine.submit(request(list(prompt))) for prompt in script]
    while engine.stats.generated_tokens < 6:
        time.sleep(0.001)
    tickets[1].cancel()
    with pytest.raises(CancelledRequest):
        tickets[1].result(5)
    assert tickets[0].result(5).text == text_of(script[(1, 0)])
    assert tickets[2].result(5).text == text_of(script[(1, 2)])
    assert engine.stats.cancelled == 1
    # The cancelled sequence's cells stay valid for reuse: the same prompt again is served correctly.
    assert engine.submit(request([1, 1])).result(5).text == text_of(script[(1, 1)])


def test_a_request_failing_mid_batch_fails_alone(make_engine):
    script = {(1, i): [2 + i] * 12 for i in range(3)}
    engine, backend = make_engine(script, delay=0.002)

    def explode(sampled: int) -> None:
        if sampled == 4:
            raise ValueError("the grammar broke")

    tickets = [engine.submit(request([1, i], grammar=explode if i == 1 else None)) for i in range(3)]
    with pytest.raises(ValueError, match="grammar broke"):
        tickets[1].result(5)
    assert [tickets[i].result(5).text for i in (0, 2)] == [text_of(script[(1, 0)]), text_of(script[(1, 2)])]
    assert engine.stats.failed == 1
    assert engine.submit(request([1, 1])).result(5).text == text_of(script[(1, 1)])


def test_a_failed_decode_fails_its_step_and_the_loop_keeps_serving(make_engine):
    script = {(1, 2): [3, 4, 5]}
    engine, backend = make_engine(script)
    assert engine.submit(request([1, 2])).result(5).text == "cde"
    backend.fail_next_decode = True
    with pytest.raises(RuntimeError, match="llama_decode"):
        engine.submit(request([1, 2])).result(5)
    # The failed decode left junk in its slot's cells; the slot was emptied, so no stale prefix is reused.
    assert engine.submit(request([1, 2])).result(5).text == "cde"


def test_a_kv_edit_that_fails_fails_only_the_request_it_was_for(make_engine):
    script = {(1, 2): [3] * 10, (4, 5): [6]}
    engine, backend = make_engine(script, n_seq=2, delay=0.002)
    running = engine.submit(request([1, 2]))
    while engine.stats.generated_tokens < 1:
        time.sleep(0.001)
    real_rm, calls = backend.seq_rm, []

    def broken_rm(seq: int, p0: int, p1: int) -> None:
        calls.append(seq)
        if len(calls) == 1:
            raise RuntimeError("llama.cpp could not remove positions")
        real_rm(seq, p0, p1)

    backend.seq_rm = broken_rm  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="could not remove"):
        engine.submit(request([4, 5])).result(5)
    assert running.result(5).text == text_of([3] * 10)
    assert engine.submit(request([4, 5])).result(5).text == "f"


def test_closing_the_engine_fails_what_is_left(make_engine):
    engine, backend = make_engine({(1,): [2] * 60}, n_seq=1, delay=0.005)
    running, queued = engine.submit(request([1])), engine.submit(request([1]))
    time.sleep(0.03)
    engine.close()
    for ticket in (running, queued):
        with pytest.raises(EngineClosed):
            ticket.result(5)
    assert backend.closed
    with pytest.raises(EngineClosed):
        engine.submit(request([1]))


# ------------------------------------------------------------------------------------------------- prefixes


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([1, 2], [1, 2]) == 2


def test_only_whole_chunks_evaluated_as_prompt_are_reusable():
    prompt = list(range(1, 30))
    assert reusable_prefix(prompt[:20], 20, prompt, 8) == 16  # cut to whole chunks
    assert reusable_prefix(prompt + [99, 98], 29, prompt + [99, 98, 97], 8) == 24  # generated tokens are not
    assert reusable_prefix(prompt, 29, prompt, 8) == 24  # the last token is always evaluated
    assert reusable_prefix(prompt[:5] + [0] * 20, 25, prompt, 4) == 4  # where the tokens differ
    assert reusable_prefix(prompt, 29, prompt, 64) == 0
    assert reusable_prefix([], 0, [7], 8) == 0
    assert [chunk_end(p, 100, 8) for p in (0, 3, 8, 15)] == [8, 5, 8, 1]
    assert chunk_end(16, 3, 8) == 3


@pytest.mark.parametrize("mixed", [True, False])
def test_prefix_reuse_evaluates_only_the_new_suffix_and_copies_across_sequences(make_engine, mixed):
    shared = list(range(1, 33))  # a 32-token "system prompt": two whole 16-token chunks
    script = {tuple(shared + [40 + i]): [1 + i] * 3 for i in range(4)}
    engine, backend = make_engine(script, n_seq=3, mixed_batches=mixed)
    first = engine.submit(request(shared + [40])).result(5)
    assert first.reused_prompt_tokens == 0
    # Two at once: one takes the warm slot in place, the other copies the shared prefix into a fresh slot (a
    # copy across KV streams brings the whole buffer; what lies past the prefix must go, or decoding fails).
    pair = [engine.submit(request(shared + [41])), engine.submit(request(shared + [42]))]
    results = [ticket.result(5) for ticket in pair]
    assert [r.text for r in results] == [text_of(script[tuple(shared + [41 + i])]) for i in range(2)]
    assert [r.reused_prompt_tokens for r in results] == [32, 32]
    assert engine.stats.prefix_copies >= 1
    # The very same prompt again: everything but its last token's chunk comes from the cache.
    again = engine.submit(request(shared + [40])).result(5)
    assert again.text == first.text and again.reused_prompt_tokens == 32
    # A copy from a sequence that is still generating: its cells past the shared prefix must not come along.
    backend.delay, backend.script[tuple(shared + [43])] = 0.002, [9] * 20
    busy = engine.submit(request(shared + [43]))
    while engine.stats.generated_tokens < 15:
        time.sleep(0.001)
    copies = engine.stats.prefix_copies
    beside = [engine.submit(request(shared + [41 + i])) for i in range(2)]
    assert [t.result(5).text for t in beside] == [text_of(script[tuple(shared + [41 + i])]) for i in range(2)]
    assert busy.result(5).text == text_of([9] * 20) and engine.stats.prefix_copies > copies


def test_a_changed_prompt_is_never_served_a_stale_prefix(make_engine):
    base = list(range(1, 13))
    changed = base.copy()
    changed[5] = 40  # differs from token 6 on
    script = {tuple(base): [2, 2], tuple(changed): [3, 3]}
    engine, _ = make_engine(script, n_seq=1, n_batch=4)
    assert engine.submit(request(base)).result(5).text == "bb"
    result = engine.submit(request(changed)).result(5)
    assert (result.text, result.reused_prompt_tokens) == ("cc", 4)
    assert engine.submit(request(base)).result(5).reused_prompt_tokens == 4


@pytest.mark.parametrize("mixed", [True, False])
def test_prompt_chunks_sit_at_fixed_positions_whatever_came_before(make_engine, mixed):
    """llama.cpp's numbers for a prompt row depend on how the prompt was cut into decodes
    (`honed.models.prefix_reuse`), so every prompt chunk starts at a multiple of `n_batch` and holds up to the
    next one, after any history: a prompt is then cut exactly as when it is the first one asked."""
    first, second = list(range(1, 24)), list(range(1, 20)) + [50, 51, 52, 53, 54]
    script = {tuple(first): [5, 6, 7], tuple(second): [8]}
    engine, backend = make_engine(script, n_seq=2, n_batch=8, mixed_batches=mixed)
    assert engine.submit(request(first)).result(5).text == "efg"
    fresh = [(start, count) for _, start, count in backend.runs if count > 1 or start < len(first)]
    assert fresh == [(0, 8), (8, 8), (16, 7)]
    backend.runs.clear()
    result = engine.submit(request(second)).result(5)
    assert (result.text, result.reused_prompt_tokens) == ("h", 16)  # 19 shared: two whole chunks
    assert [(start, count) for _, start, count in backend.runs][:1] == [(16, 8)]
    # The first prompt with its own answer and more after it: the answer was generated, not evaluated as a
    # prompt, so it is evaluated again, in the prompt's chunks.
    backend.runs.clear()
    follow_up = first + [5, 6, 7, 9]
    backend.script[tuple(follow_up)] = [3]
    assert engine.submit(request(follow_up)).result(5).reused_prompt_tokens == 16
    assert [(start, count) for _, start, count in backend.runs][:1] == [(16, 8)]


def test_a_short_common_prefix_is_not_copied_when_copies_are_dear(make_engine):
    """With separate KV streams a copy moves a whole buffer: below `min_copy` tokens the prompt is re-evaluated."""
    script = {(1, 2, 3, 4, 5, 6, 7): [8] * 20, (1, 2, 3, 4, 9): [2]}
    engine, _ = make_engine(script, n_seq=2, min_copy=16, delay=0.002)
    busy = engine.submit(request([1, 2, 3, 4, 5, 6, 7]))
    while engine.stats.generated_tokens < 1:
        time.sleep(0.001)
    other = engine.submit(request([1, 2, 3, 4, 9])).result(5)
    assert (other.text, other.reused_prompt_tokens) == ("b", 0)
    assert busy.result(5).text == text_of([8] * 20) and engine.stats.prefix_copies == 0


def test_prefix_sharing_can_be_turned_off(make_engine):
    engine, _ = make_engine({(1, 2, 3): [4]}, share_prefixes=False)
    for _ in range(2):
        assert engine.submit(request([1, 2, 3])).result(5).reused_prompt_tokens == 0
    assert engine.stats.prompt_tokens_evaluated == 6


# ------------------------------------------------------------------------------------------------- provider


class TinyLlama:
    """The parts of `llama_cpp.Llama` the provider's batched path reads: a chat handler and a tokenizer."""

    chat_format = "tiny"
    _chat_handlers: dict = {}
    verbose = False

    def __init__(self, n_ctx: int = 64) -> None:
        self.context = n_ctx
        self.chat_handler = self._handler

    def n_ctx(self) -> int:
        return self.context

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [1 + (len(word) % 20) for word in text.split()]

    @staticmethod
    def _handler(llama: Any, messages: list, **kwargs: Any) -> Any:
        rendered = " ".join(str(m["content"]) for m in messages)
        passed = {k: kwargs[k] for k in ("temperature", "top_p", "top_k", "min_p", "typical_p", "max_tokens", "seed",
                                        "grammar", "repeat_penalty", "frequency_penalty", "presence_penalty")}
        stop = kwargs.get("stop") or []
        return llama.create_completion(prompt=llama.tokenize(rendered.encode()), stop=[*stop, "\n\n"], **passed)

    def create_chat_completion(self, **kwargs: Any) -> dict:
        raise AssertionError("the batched path must not fall back to the single-stream path here")


@pytest.fixture
def batched_provider(tmp_path, monkeypatch):
    """`gguf/<tmp>/tiny.gguf` served by a provider whose loaded model has a batched loop over FakeBackend."""
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"not a real model")
    llama = TinyLlama()
    prompt = tuple(llama.tokenize(b"Be kind. hello there"))
    backend = FakeBackend({prompt: [7, 8, 9]}, n_ctx_seq=llama.n_ctx(), n_batch=2)
    engine = BatchEngine(backend)
    provider = gguf.GGUFProvider()
    provider._models[path.resolve()] = gguf._LoadedModel(llama, engine=engine)
    gguf.install_gguf_provider(provider)
    monkeypatch.setattr(gguf, "check_allowed", lambda model: None)
    yield provider, f"gguf/{path}", backend
    engine.close()
    gguf.register_gguf_provider()


def test_the_provider_serves_calls_through_the_batched_loop(batched_provider):
    provider, model, backend = batched_provider
    messages = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "hello there"}]
    response = litellm.completion(model=model, messages=messages, max_tokens=10, temperature=0, n=2)
    assert [choice.message.content for choice in response.choices] == ["ghi", "ghi"]
    assert response.usage.prompt_tokens == 4 and response.usage.completion_tokens == 6
    assert provider.stats.calls == 2 and provider.stats.batched_calls == 2 and provider.stats.prompt_tokens == 8
    reused = provider.stats.reused_prompt_tokens
    again = litellm.completion(model=model, messages=messages, max_tokens=2, temperature=0)
    assert again.choices[0].message.content == "gh" and again.choices[0].finish_reason == "length"
    assert provider.stats.reused_prompt_tokens == reused + 2  # the whole 2-token chunk before the last token


def test_the_batched_path_refuses_an_over_long_prompt_before_generating(batched_provider):
    provider, model, backend = batched_provider
    with pytest.raises(Exception) as info:
        litellm.completion(model=model, messages=[{"role": "user", "content": "word " * 60}], max_tokens=10)
    assert "holds 64" in str(find_cause(info.value, ContextLengthExceeded))
    assert provider.stats.calls == 0 and backend.batches == []


def test_max_tokens_is_clamped_to_the_room_each_sequence_has():
    llama = TinyLlama(n_ctx=64)
    prompt, captured = gguf.capture_completion(llama, [{"role": "user", "content": "w " * 30}], max_tokens=500,
                                               temperature=0.0)
    room = gguf.prompt_budget("gguf/t", len(prompt), 64, 500)
    request = gguf.batch_request(prompt, {**captured, "max_tokens": room}, 64)
    assert request is not None and request.max_tokens == room == 64 - 30
    assert request.stop == [b"\n\n"] and request.temperature == 0.0


def test_requests_the_loop_does_not_implement_take_the_single_stream_path():
    llama = TinyLlama()
    prompt, captured = gguf.capture_completion(llama, [{"role": "user", "content": "hi"}], max_tokens=5)
    assert gguf.batch_request(prompt, captured, 64) is not None
    for unsupported in ({"stream": True}, {"logprobs": 2}, {"logit_bias": {1: 2.0}}, {"mirostat_mode": 2}):
        assert gguf.batch_request(prompt, {**captured, **unsupported}, 64) is None
    assert gguf.batch_request("a text prompt", captured, 64) is None


def test_batching_is_off_unless_the_environment_turns_it_on(monkeypatch):
    monkeypatch.delenv("HONED_GGUF_BATCH", raising=False)
    assert gguf.batching_enabled() is False
    for value, expected in (("1", True), ("yes", True), ("0", False), ("off", False), ("", False)):
        monkeypatch.setenv("HONED_GGUF_BATCH", value)
        assert gguf.batching_enabled() is expected



def test_long_contexts_get_fewer_sequences():
    assert gguf.default_batch_seqs(4096) == 4
    assert gguf.default_batch_seqs(8192) == 2
    assert gguf.default_batch_seqs(32768) == 1  # then no batched loop at all: single-stream
