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
