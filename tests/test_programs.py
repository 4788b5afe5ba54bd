"""The ready programs: the two-stage pipeline passes its typed intermediate output on, and round-trips."""

from __future__ import annotations

import json

import dspy
import pytest

import honed
from honed.artifact import load, save
from honed.programs import MultipleChoice, ReasonThenAnswer, load_task
from honed.testing import ScriptedLM


def _answer(messages, schema):
    fields = set((schema or {}).get("properties", {}))
    last = messages[-1]["content"]
    if fields == {"reasoning"}:
        return {"reasoning": "the word 'bad' is negative" if "bad" in last else "nothing negative"}
    assert "reasoning" in last, "the answer step must see the reasoning"
    return {"sentiment": "negative" if "is negative" in last else "positive"}


def test_the_answer_step_sees_the_reasoning_and_answers_a_label(tmp_path):
    honed.configure(model=ScriptedLM(_answer), cache_dir=tmp_path / "cache", num_threads=1)
    program = ReasonThenAnswer(labels=["positive", "negative"], input_field="sentence", output_field="sentiment")
    assert [name for name, _ in program.named_predictors()] == ["reason", "answer"]
    assert program(sentence="a bad film").sentiment == "negative"
    assert program(sentence="a fine film").sentiment == "positive"


def test_a_task_loads_as_a_pipeline_with_its_labels():
    task = load_task("sentiment", program="pipeline")
    program = task.program()
    assert isinstance(program, ReasonThenAnswer)
    assert list(program.answer.signature.input_fields) == ["sentence", "reasoning"]
    assert program.answer.signature.output_fields["sentiment"].annotation.__args__ == ("negative", "positive")
    text = load_task("singular_to_plural", program="pipeline").program()
    assert text.answer.signature.output_fields["plural"].annotation is str


@pytest.mark.parametrize("make", [
    lambda: ReasonThenAnswer(input_field="word", output_field="plural", instructions="Write the plural."),
    lambda: MultipleChoice(["(A)", "(B)"]),
])
def test_pipelines_round_trip_through_an_artifact(tmp_path, make):
    program = make()
    program.answer.demos = [dspy.Example(**{name: "x" for name in program.answer.signature.fields})]
    path = tmp_path / "p.json"
    save(program, path)
    loaded = load(path)
    assert type(loaded) is type(program)
    assert loaded.init_args == program.init_args
    assert json.loads(path.read_text())["program"]["class"].endswith(type(program).__name__)
    assert [dict(d) for d in loaded.answer.demos] == [dict(d) for d in program.answer.demos]
