"""The plain prompt layout and the schema that travels with every typed request."""

from __future__ import annotations

from typing import Literal

import dspy
import pydantic
import pytest

import honed
from honed.errors import SchemaError
from honed.models.schema import output_schema
from honed.testing import SchemaLM, ScriptedLM


class Person(pydantic.BaseModel):
    name: str
    age: int


class Everything(dspy.Signature):
    """Describe the text."""

    text: str = dspy.InputField()
    word: str = dspy.OutputField()
    count: int = dspy.OutputField()
    ratio: float = dspy.OutputField()
    flag: bool = dspy.OutputField()
    mood: Literal["happy", "sad"] = dspy.OutputField()
    tags: list[str] = dspy.OutputField()
    person: Person = dspy.OutputField()


def test_output_schema_covers_every_supported_type():
    schema = output_schema(Everything)
    props = schema["properties"]
    assert list(props) == ["word", "count", "ratio", "flag", "mood", "tags", "person"]
    assert schema["required"] == list(props) and schema["additionalProperties"] is False
    assert props["count"]["type"] == "integer" and props["ratio"]["type"] == "number"
    assert props["flag"]["type"] == "boolean" and props["mood"]["enum"] == ["happy", "sad"]
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert "$ref" in props["person"] and "Person" in schema["$defs"]


def test_inexpressible_output_type_names_the_field():
    class Weird(dspy.Signature):
        """x"""

        text: str = dspy.InputField()
        handle: object = dspy.OutputField()
        thing: type = dspy.OutputField()

    with pytest.raises(SchemaError, match="`thing`"):
        output_schema(Weird)


def test_schema_lm_round_trips_every_type_through_the_adapter(cache_dir):
    honed.configure(model=SchemaLM(), cache_dir=cache_dir)
    result = dspy.Predict(Everything)(text="hello")
    assert result.word == "x" and result.count == 0 and result.flag is False and result.mood == "happy"
    assert isinstance(result.person, Person)


def test_plain_layout_single_input_and_demos(cache_dir):
    lm = ScriptedLM(lambda messages, schema: {"sentiment": "negative"})
    honed.configure(model=lm, cache_dir=cache_dir)
    program = honed.Classify(["positive", "negative"], input_field="sentence", output_field="sentiment",
                             instructions="Classify the sentiment.")
    program.predict.demos = [dspy.Example(sentence="Great fun.", sentiment="positive")]
    assert program(sentence="Dull and long.").sentiment == "negative"
    messages = lm.engine.calls[0]
    assert messages == [
        {"role": "system", "content": "Classify the sentiment."},
        {"role": "user", "content": "Great fun."},
        {"role": "assistant", "content": '{"sentiment": "positive"}'},
        {"role": "user", "content": "Dull and long."},
    ]
    assert "[[ ##" not in str(messages)


def test_several_inputs_are_labelled_and_unenforced_schema_is_spelled_out(cache_dir):
    lm = ScriptedLM(lambda messages, schema: '{"answer": "4"}')
    honed.configure(model=lm, cache_dir=cache_dir, typed_outputs="off")
    sig = dspy.Signature("question, context -> answer", "Answer the question.")
    assert dspy.Predict(sig)(question="2+2?", context="math").answer == "4"
    system, user = lm.engine.calls[0]
    assert user["content"] == "question: 2+2?\ncontext: math"
    assert '"answer"' in system["content"] and "JSON" in system["content"]


def test_gguf_requests_carry_the_json_schema(cache_dir):
    adapter = honed.HonedAdapter()
    lm = dspy.LM("gguf/smollm2-135m")
    kwargs: dict = {}
    assert adapter._set_response_format(lm, kwargs, Everything) is True
    assert kwargs["response_format"]["type"] == "json_schema"
    assert kwargs["response_format"]["json_schema"]["schema"] == output_schema(Everything)
    llama_style: dict = {}
    honed.HonedAdapter("llama.cpp")._set_response_format(lm, llama_style, Everything)
    assert llama_style["response_format"] == {"type": "json_object", "schema": output_schema(Everything)}


def test_unknown_typed_outputs_mode_is_refused():
    with pytest.raises(honed.ConfigError):
        honed.configure(model=SchemaLM(), typed_outputs="yaml", cache=False)


def test_annotated_constraints_reach_the_schema():
    from typing import Annotated

    class Capped(dspy.Signature):
        """x"""

        text: str = dspy.InputField()
        note: Annotated[str, pydantic.StringConstraints(max_length=20)] = dspy.OutputField()
        picks: Annotated[list[int], pydantic.Field(max_length=3)] = dspy.OutputField()

    props = output_schema(Capped)["properties"]
    assert props["note"] == {"type": "string", "maxLength": 20}
    assert props["picks"]["maxItems"] == 3
