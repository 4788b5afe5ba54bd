"""The embedded provider on the real model: grammars for every output type, threads, usage, max_tokens."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Literal

import dspy
import litellm
import pydantic
import pytest

import honed
from honed.models import register_gguf_provider
from honed.models.schema import canonical_json, grammar_for_schema, output_schema

pytestmark = pytest.mark.model


class Pet(pydantic.BaseModel):
    name: str
    legs: int


TYPES = {
    "text": (str, str),
    "count": (int, int),
    "ratio": (float, float),
    "flag": (bool, bool),
    "mood": (Literal["happy", "sad"], str),
    "tags": (list[str], list),
    "pet": (Pet, Pet),
}


@pytest.mark.parametrize("field", list(TYPES))
def test_every_supported_type_decodes_and_parses(embedded, field):
    annotation, python_type = TYPES[field]
    sig = dspy.Signature({"sentence": (str, dspy.InputField()), field: (annotation, dspy.OutputField())},
                         f"Read the sentence and give the {field}.")
    grammar_for_schema(canonical_json(output_schema(sig)))  # compiles
    result = dspy.Predict(sig)(sentence="My two happy dogs, Rex and Max, have four legs each.")
    value = getattr(result, field)
    assert isinstance(value, python_type)
    if field == "mood":
        assert value in ("happy", "sad")


def test_concurrent_calls_from_threads_match_sequential_results(cache_dir):
    honed.configure(model="gguf/smollm2-135m", cache=False, max_tokens=32)
    program = honed.load_task("sentiment").program()
    sentences = [f"Review number {i}: {'great' if i % 2 else 'awful'} film." for i in range(8)]
    sequential = [program(sentence=s).sentiment for s in sentences]

    def run(sentence: str) -> str:
        with dspy.context(lm=dspy.settings.lm):
            return program(sentence=sentence).sentiment

    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(run, sentences))
    assert parallel == sequential


def test_usage_and_max_tokens_reach_the_model():
    provider = register_gguf_provider()
    before = provider.stats.calls
    schema = {"type": "object", "properties": {"story": {"type": "string"}}, "required": ["story"]}
    response = litellm.completion(
        model="gguf/smollm2-135m", messages=[{"role": "user", "content": "Write a long story about a cat."}],
        max_tokens=12, temperature=0, response_format={"type": "json_object", "schema": schema},
    )
    assert 0 < response.usage.completion_tokens <= 12
    assert response.usage.prompt_tokens > 5
    assert response.choices[0].finish_reason == "length"
    assert provider.stats.calls == before + 1


def test_n_returns_several_choices_and_stop_is_honoured():
    response = litellm.completion(model="gguf/smollm2-135m", messages=[{"role": "user", "content": "Count: 1, 2, 3,"}],
                                  max_tokens=20, temperature=0.8, seed=1, n=2, stop=["7"])
    assert len(response.choices) == 2
    assert all("7" not in choice.message.content for choice in response.choices)


def test_missing_model_file_is_a_clear_error(tmp_path):
    with pytest.raises(honed.ModelNotFoundError, match="no GGUF file"):
        honed.configure(model=f"gguf/{tmp_path / 'absent.gguf'}", cache=False)
    with pytest.raises(honed.ModelNotFoundError, match="gguf/smollm2-135m"):
        honed.configure(model="gguf/not-a-model", cache=False)


# ------------------------------------------------------------------------------------ batched decoding


@pytest.fixture(scope="module")
def batched():
    """A second provider whose models decode in a batched loop (4 sequences), installed for one test at a time."""
    from honed.models.gguf import GGUFProvider

    provider = GGUFProvider(batching=True, batch_seqs=4)
    yield provider
    provider.close()


@pytest.fixture(scope="module")
def single_stream():
    """A provider with batching off: today's path, one request at a time on one `Llama`."""
    from honed.models.gguf import GGUFProvider

    return GGUFProvider(batching=False)


@pytest.fixture
def use_batched(batched):
    from honed.models.gguf import install_gguf_provider

    install_gguf_provider(batched)
    yield batched
    register_gguf_provider()


SENTIMENT_SCHEMA = {"type": "object", "properties": {"sentiment": {"enum": ["negative", "positive"], "type": "string"}},
                    "required": ["sentiment"], "additionalProperties": False}


def _sentiment_call(sentence: str) -> str:
    response = litellm.completion(
        model="gguf/smollm2-135m", max_tokens=28, temperature=0,
        messages=[{"role": "system", "content": "Classify the sentiment of the sentence as positive or negative."},
                  {"role": "user", "content": sentence}],
        response_format={"type": "json_object", "schema": SENTIMENT_SCHEMA})
    return response.choices[0].message.content


def test_batched_answers_equal_the_single_stream_answers(use_batched, single_stream):
    from honed.models.gguf import install_gguf_provider

    sentences = [f"Review number {i}: {'a great' if i % 2 else 'an awful'} film, {i * 7} minutes long."
                 for i in range(8)]
    install_gguf_provider(single_stream)
    sequential = [_sentiment_call(s) for s in sentences]
    assert single_stream.stats.batched_calls == 0
    install_gguf_provider(use_batched)
    before = use_batched.stats.batched_calls
    with ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(_sentiment_call, sentences))
    assert concurrent == sequential
    assert use_batched.stats.batched_calls - before == 8
    (stats,) = use_batched.engine_stats().values()
    assert stats["max_active"] > 1, "the requests were decoded together"


def test_a_lone_batched_request_starts_at_once(use_batched):
    from honed.models.batching import BatchRequest
    from honed.models.gguf import capture_completion, resolve_gguf_path

    loaded = use_batched.loaded(resolve_gguf_path("gguf/smollm2-135m"))
    assert loaded.engine is not None and loaded.engine.max_wait_s == 0
    prompt, _ = capture_completion(loaded.llama, [{"role": "user", "content": "Say hi."}], max_tokens=4)
    for _ in range(3):
        ticket = loaded.engine.submit(BatchRequest(prompt=prompt, max_tokens=4))
        result = ticket.result(60)
        assert result.completion_tokens <= 4
        assert ticket.started is not None and ticket.started - ticket.submitted < 0.1


def test_each_batched_sequence_keeps_its_own_grammar(use_batched):
    import json

    schemas = {
        "count": {"type": "object", "properties": {"count": {"type": "integer"}}, "required": ["count"]},
        "mood": {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}}, "required": ["mood"]},
        "tags": {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"},
                                                           "maxItems": 3}}, "required": ["tags"]},
        "flag": {"type": "object", "properties": {"flag": {"type": "boolean"}}, "required": ["flag"]},
    }

    def call(name: str) -> dict:
        response = litellm.completion(
            model="gguf/smollm2-135m", max_tokens=40, temperature=0,
            messages=[{"role": "user", "content": f"My two happy dogs play all day. Give the {name}."}],
            response_format={"type": "json_object", "schema": schemas[name]})
        return json.loads(response.choices[0].message.content)

    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = dict(zip(schemas, pool.map(call, schemas), strict=True))
    assert isinstance(answers["count"]["count"], int)
    assert answers["mood"]["mood"] in ("happy", "sad")
    assert isinstance(answers["tags"]["tags"], list) and len(answers["tags"]["tags"]) <= 3
    assert isinstance(answers["flag"]["flag"], bool)


def test_the_greedy_grammar_shortcut_picks_what_the_sampler_chain_picks(use_batched):
    """Greedy with the grammar checked on the winner first must equal llama.cpp's grammar -> greedy chain."""
    from honed.models.batching import BatchEngine, BatchRequest, LlamaBackend
    from honed.models.gguf import capture_completion, resolve_gguf_path
    from honed.models.schema import canonical_json, grammar_for_schema

    loaded = use_batched.loaded(resolve_gguf_path("gguf/smollm2-135m"))
    grammar = grammar_for_schema(canonical_json(SENTIMENT_SCHEMA))
    prompts = [capture_completion(loaded.llama, [{"role": "user", "content": f"Is '{s}' positive?"}], max_tokens=20,
                                  grammar=grammar)[0] for s in ("I loved it", "Dreadful", "It was fine")]
    texts = {}
    for shortcut in (True, False):
        # Waiting for all three makes both runs decode the same batches, hence the same logits.
        engine = BatchEngine(LlamaBackend(loaded.llama, 3, greedy_shortcut=shortcut), max_wait_s=5.0)
        try:
            tickets = [engine.submit(BatchRequest(prompt=p, max_tokens=20, grammar=grammar)) for p in prompts]
            texts[shortcut] = [ticket.result(120).text for ticket in tickets]
        finally:
            engine.close()
    assert texts[True] == texts[False]


def test_a_copied_prefix_gives_what_evaluating_the_whole_prompt_gives(use_batched):
    """Prefix copies between KV streams serve exactly the numbers a full evaluation would (no stale cells)."""
    from honed.models.batching import BatchEngine, BatchRequest, LlamaBackend
    from honed.models.gguf import capture_completion, resolve_gguf_path

    loaded = use_batched.loaded(resolve_gguf_path("gguf/smollm2-135m"))
    system = {"role": "system", "content": "You answer in one short sentence. " * 24}  # several whole chunks
    prompts = [capture_completion(loaded.llama, [system, {"role": "user", "content": q}], max_tokens=12)[0]
               for q in ("Name a colour.", "Name a fruit.", "Name a colour.")]
    texts = {}
    for share in (False, True):
        backend = LlamaBackend(loaded.llama, 2)
        backend.min_copy = 1
        engine = BatchEngine(backend, share_prefixes=share)
        try:
            first = engine.submit(BatchRequest(prompt=prompts[0], max_tokens=12))
            first.result(120)
            # Two at once: one reuses the first's slot in place, the other copies its prefix into the other slot.
            rest = [engine.submit(BatchRequest(prompt=p, max_tokens=12)) for p in prompts[1:]]
            results = [first.result(), *(ticket.result(120) for ticket in rest)]
            texts[share] = [r.text for r in results]
            if share:
                assert engine.stats.prompt_tokens_reused > 0 and engine.stats.prefix_copies >= 1
        finally:
            engine.close()
    assert texts[True] == texts[False]


def _row0_logits(backend, prompt: list[int], width: int):
    """Sequence 0's logits after one decode step of `width` sequences, each holding `prompt`."""
    n = len(prompt)
    backend.decode(prompt * width, list(range(n)) * width, [s for s in range(width) for _ in prompt],
                   [False] * (n * width))
    backend.decode([prompt[-1]] * width, [n] * width, list(range(width)), [True] * width)
    logits = backend.row_logits(0).copy()
    for seq in range(width):
        backend.seq_rm(seq, 0, -1)
    return logits


@pytest.mark.parametrize(("model", "always_exact"), [("gguf/smollm2-135m", True), ("gguf/qwen2.5-coder-1.5b", False)])
def test_the_exactness_probe_finds_how_many_sequences_decode_like_one(single_stream, model, always_exact):
    """The probe's width is checked on another prompt: `width` sequences decode like one, and where the width is
    under 4, 4 do not. Q4_1 SmolLM2 computes a 4-sequence step as four 1-sequence steps on every CPU seen; for
    Q4_K_M Qwen it depends on llama.cpp's kernels for the CPU (3 on an AMD EPYC, 4 on an Intel Xeon, both
    AVX-512), so only the probe's agreement with the check is asserted there."""
    import numpy as np

    from honed.models.batching import LlamaBackend
    from honed.models.gguf import resolve_gguf_path

    loaded = single_stream.loaded(resolve_gguf_path(model))
    with loaded.lock:
        backend = LlamaBackend(loaded.llama, 4)
        try:
            width = backend.probe_exact_width()
            prompt = [int(t) for t in loaded.llama.tokenize(b"Count the apples: one, two,", add_bos=True)]
            one, four = _row0_logits(backend, prompt, 1), _row0_logits(backend, prompt, 4)
            assert 1 <= width <= 4 and np.array_equal(one, four) is (width == 4)  # the probe's finding, rechecked
            if always_exact:
                assert width == 4
            assert np.array_equal(_row0_logits(backend, prompt, width), one)
            assert backend.stats.exact_width == width
        finally:
            backend.close()


def test_a_prompt_gets_the_same_numbers_whatever_was_asked_before(single_stream):
    """llama.cpp's numbers for a prompt row depend on how the prompt was cut into decodes (Q4_K_M Qwen2.5: up
    to 0.58 in a logit on an AMD EPYC), so a reused prefix must end where an evaluation from an empty cache
    cuts (`honed.models.prefix_reuse`): a prompt asked after another that shares most of it gets the very
    logits it gets from an empty cache, and the same answer."""
    import numpy as np

    from honed.models.gguf import rendered_prompt, resolve_gguf_path
    from honed.models.prefix_reuse import common_prefix

    loaded = single_stream.loaded(resolve_gguf_path("gguf/qwen2.5-coder-1.5b"))
    story = " ".join(f"Box {i} holds {i * 3} apples." for i in range(20))
    asks = [[{"role": "user", "content": f"{story} {question}"}]
            for question in ("How many apples are in box 7?", "Which box holds 12 apples? Answer with its number.")]

    def ask(messages: list) -> tuple[str, np.ndarray]:
        """The first answer token, and the logits it was picked from (the prompt's last row)."""
        prompt = rendered_prompt(loaded.llama, messages)
        with loaded.lock:
            out = loaded.complete(prompt, messages=messages, max_tokens=1, temperature=0.0)
            logits = np.ctypeslib.as_array(loaded.llama._ctx.get_logits(), shape=(loaded.llama.n_vocab(),))
            return out["choices"][0]["message"]["content"], logits.copy()

    with loaded.lock:
        loaded.evaluated = 0  # nothing reusable: the first ask is evaluated from an empty cache
    first, fresh = ask(asks[0])
    ask(asks[1])
    shared = common_prefix(rendered_prompt(loaded.llama, asks[0]), rendered_prompt(loaded.llama, asks[1]))
    chunk = int(loaded.llama.n_batch)
    assert loaded.evaluated > shared > 2 * chunk and shared % chunk != 0  # the third ask reuses whole chunks only
    again, logits = ask(asks[0])
    assert again == first and np.array_equal(logits, fresh)
