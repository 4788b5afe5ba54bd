"""Output types inferred from the data: ints, floats, labels, bounded text; their schema, grammar,
max_tokens cap, artifacts and metric. Fake models, except the `model`-marked tests at the end."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import dspy
import pydantic
import pytest

import honed
from honed.adapter import HonedAdapter
from honed.artifact import load, save
from honed.models.grammar_bound import max_grammar_bytes, max_output_tokens
from honed.models.schema import canonical_json, gbnf_for_schema, output_schema
from honed.programs import ExactMatch, ReasonThenAnswer, Task, Transform, bundled_task_names
from honed.programs.output_types import infer_output_type, is_int_literal, is_number_literal, text_bound
from honed.signatures import REASONING_MAX_CHARS
from honed.testing import FunctionEngine, ScriptedLM

BBH_DIR = Path(os.environ.get("HONED_BBH_DIR") or Path(__file__).resolve().parents[1].parent / "shared/data/bbh")


def _signature(annotation: Any) -> type[dspy.Signature]:
    return dspy.Signature({"question": (str, dspy.InputField()), "answer": (annotation, dspy.OutputField())}, "Answer.")


def _output(program: dspy.Module, field: str) -> Any:
    """The output field of a one-step program's `predict`, or of a pipeline's `answer` step."""
    predictors = dict(program.named_predictors())
    return (predictors.get("predict") or predictors["answer"]).signature.output_fields[field]


# ------------------------------------------------------------------------------------------ inference


@pytest.mark.parametrize(("text", "expected"), [
    ("12", True), ("-3", True), ("0", True), ("123456789012345", True),
    ("007", False), ("+3", False), ("1_000", False), (" 4", False), ("4 ", False), ("-0", False), ("1.0", False),
    ("\u0661\u0662", False),  # Arabic-Indic digits: int() reads them, but they do not round-trip
    ("1234567890123456", False),  # 16 digits: more than MAX_INT_DIGITS
    ("", False), ("-", False),
])
def test_int_literals_round_trip(text, expected):
    assert is_int_literal(text) is expected
    if expected:
        assert str(int(text)) == text


@pytest.mark.parametrize(("text", "expected"), [
    ("2.5", True), ("-0.25", True), ("1e3", True), ("3", True), ("2.50", True),
    ("007", False), (".5", False), ("5.", False), ("nan", False), ("inf", False), ("1,5", False), ("", False),
])
def test_number_literals_are_json_numbers(text, expected):
    assert is_number_literal(text) is expected


def test_inference_rules_in_order():
    assert infer_output_type(["3", "5", "7"]).kind == "int"          # numbers win over a small label set
    assert infer_output_type(["3", "5"], ["-2"]).kind == "int"
    assert infer_output_type(["3", "2.5"]).kind == "float"
    assert infer_output_type(["3", "5"], ["five"]).kind == "label"   # an alternative answer that is text
    assert infer_output_type(["007", "010"]).kind == "label"          # zero-padded codes are not numbers
    labels = infer_output_type(["yes", "no", "yes"])
    assert labels.kind == "label" and labels.labels == ("no", "yes")
    many = infer_output_type([f"w{i}" for i in range(11)])
    assert many.kind == "text" and many.max_chars == 2 * 3 + 16
    assert infer_output_type(["yes", "no"], labels=False).kind == "text"
    assert infer_output_type(["a"]).kind == "text"                    # one value is no label set


def test_text_bound_counts_the_longest_answer_including_alternatives():
    assert text_bound(["ab", "abcd"]) == 2 * 4 + 16
    assert infer_output_type(["ab"] * 20, ["x" * 30]).max_chars == 2 * 30 + 16


# Every bundled task: (kind, max_chars or None). Labels: sentiment, word_in_context.
BUNDLED = {
    "active_to_passive": ("text", 114), "antonyms": ("text", 56), "diff": ("int", None),
    "first_word_letter": ("text", 18), "informal_to_formal": ("text", 138), "larger_animal": ("text", 50),
    "letters_list": ("text", 74), "negation": ("text", 310), "num_to_verbal": ("text", 110),
    "orthography_starts_with": ("text", 74), "rhymes": ("text", 44), "sentiment": ("label", None),
    "singular_to_plural": ("text", 50), "sum": ("int", None), "taxonomy_animal": ("text", 94),
    "translation_en-de": ("text", 96), "translation_en-es": ("text", 60), "word_in_context": ("label", None),
}


def test_the_table_covers_every_bundled_task():
    assert sorted(BUNDLED) == bundled_task_names()


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_each_bundled_task_gets_its_type(name):
    kind, max_chars = BUNDLED[name]
    task = honed.load_task(name)
    assert task.output_type.kind == kind
    field = _output(task.program(), task.output_field)
    if kind == "text":
        assert task.output_type.max_chars == max_chars
        assert field.annotation is str and field.metadata[0].max_length == max_chars
    elif kind == "int":
        assert field.annotation is int
    else:
        assert field.annotation == Literal.__getitem__(tuple(task.labels))


def _fits(task: Task, answer: str) -> bool:
    kind = task.output_type.kind
    if kind == "int":
        return is_int_literal(answer)
    if kind == "float":
        return is_number_literal(answer)
    if kind == "label":
        return answer in task.output_type.labels
    return len(answer) <= task.output_type.max_chars


def _bbh_files() -> list[Path]:
    return sorted(BBH_DIR.glob("*.json")) if BBH_DIR.is_dir() else []


def test_the_bbh_data_is_there():
    if not BBH_DIR.is_dir():
        pytest.skip(f"no BBH data at {BBH_DIR}")
    assert len(_bbh_files()) == 24


@pytest.mark.parametrize("path", _bbh_files(), ids=lambda p: p.stem)
def test_every_bbh_task_is_typed_so_each_training_answer_can_be_written(path):
    task = honed.load_task(f"bbh/{path.stem}", bbh_dir=path.parent)
    assert all(_fits(task, str(e[task.output_field])) for e in task.train)
    targets = [e["target"] for e in json.loads(path.read_text())["examples"]]
    choices = {str(e[task.output_field]) for e in task.train}
    if all(is_int_literal(t) for t in targets):
        assert task.output_type.kind == "int"
    elif all(t.startswith("(") for t in targets):  # multiple choice: labels, unless more than 10 options
        assert task.output_type.kind == ("label" if len(choices) <= 10 else "text")


@pytest.mark.skipif(not BBH_DIR.is_dir(), reason="no BBH data")
def test_known_bbh_types():
    def kind(name: str) -> str:
        return honed.load_task(f"bbh/{name}", bbh_dir=BBH_DIR).output_type.kind

    assert kind("object_counting") == kind("multistep_arithmetic_two") == "int"
    assert kind("navigate") == kind("boolean_expressions") == kind("date_understanding") == "label"
    assert kind("word_sorting") == kind("dyck_languages") == "text"


def test_task_from_files_types_ints_and_floats(tmp_path):
    def task(outputs: list[str], **kw: Any) -> Task:
        path = tmp_path / "t.train.jsonl"
        path.write_text("".join(json.dumps({"input": f"q{i}", "output": o}) + "\n" for i, o in enumerate(outputs)))
        return honed.task_from_files(path, path, **kw)

    ints = task(["1", "2", "3"])
    assert ints.kind == "transform" and ints.output_type.kind == "int"
    assert _output(ints.program(), "output").annotation is int
    assert _output(task(["1.5", "2"]).program(), "output").annotation is float
    forced = task(["yes", "no"], program="transform")
    assert forced.kind == "transform" and _output(forced.program(), "output").metadata[0].max_length == 2 * 3 + 16
    classified = task(["1", "2"], program="classify")
    assert classified.kind == "classify" and classified.labels == ["1", "2"]


def test_a_directly_built_task_is_typed_from_its_training_data():
    train = [dspy.Example(q=f"{i} + 1", total=str(i + 1)).with_inputs("q") for i in range(12)]
    task = Task(name="t", train=train, test=train, input_field="q", output_field="total", instructions="Add.",
                kind="transform")
    assert task.output_type.kind == "int" and isinstance(task.program(), Transform)


def test_a_format_plant_on_a_number_task_is_retyped_as_text():
    from honed.diagnose import plant

    train = [dspy.Example(id=str(i), numbers=f"{i} 1", total=str(i + 1)).with_inputs("numbers") for i in range(20)]
    task = Task(name="nums", train=train, test=train[:5], input_field="numbers", output_field="total",
                instructions="Add the numbers.", kind="transform")
    planted, _ = plant(task, "format")
    assert task.output_type.kind == "int" and planted.output_type.kind == "text"
    assert _output(planted.program(), "total").annotation is str


# ------------------------------------------------------------------------------------------ schema and grammar


def test_bounded_text_and_numbers_reach_the_schema():
    assert output_schema(Transform(max_chars=30).predict.signature)["properties"]["output"] == {
        "type": "string", "maxLength": 30}
    assert output_schema(Transform(output_type="int").predict.signature)["properties"]["output"] == {
        "type": "integer"}
    assert output_schema(Transform().predict.signature)["properties"]["output"] == {"type": "string"}
    pipeline = ReasonThenAnswer(input_field="word", output_field="plural", max_chars=20)
    assert output_schema(pipeline.reason.signature)["properties"]["reasoning"]["maxLength"] == REASONING_MAX_CHARS
    assert output_schema(pipeline.answer.signature)["properties"]["plural"]["maxLength"] == 20


def test_bad_output_types_are_refused():
    with pytest.raises(honed.ConfigError, match="output_type"):
        Transform(output_type="list")  # type: ignore[arg-type]
    with pytest.raises(honed.ConfigError, match="max_chars"):
        Transform(max_chars=0)


def test_bounded_strings_become_one_counted_repetition():
    gbnf = gbnf_for_schema(canonical_json(output_schema(Transform(max_chars=5000).predict.signature)))
    assert 'output ::= "\\"" char{0,5000} "\\"" space' in gbnf.splitlines()
    assert "(char (char" not in gbnf  # not 5000 nested groups, which llama.cpp's parser refuses


def _longest_int_answer() -> str:
    # What the grammar allows at most: every optional space, a sign and 16 digits.
    return '{ "answer" : -1234567890123456 } '


def test_the_token_bound_is_the_longest_text_the_grammar_allows():
    schema = output_schema(_signature(int))
    assert max_output_tokens(schema) == len(_longest_int_answer().encode())
    # a bounded string: each character at most a 6-byte \\uXXXX escape
    text = output_schema(_signature(Annotated[str, pydantic.StringConstraints(max_length=10)]))
    longest = '{ "answer" : "' + "\\u00e9" * 10 + '" } '
    assert max_output_tokens(text) == len(longest.encode())
    labels = output_schema(_signature(Literal["yes", "négatif"]))
    assert max_output_tokens(labels) == len('{ "answer" : "négatif"} '.encode())  # no space after a literal


def test_unbounded_outputs_have_no_token_bound():
    assert max_output_tokens(output_schema(_signature(str))) is None
    assert max_output_tokens(output_schema(_signature(list[int]))) is None
    assert max_grammar_bytes('root ::= "a" root | "b"') is None        # recursive
    assert max_grammar_bytes('root ::= [a-z]{2,}') is None
    assert max_grammar_bytes('root ::= ("ab" | "c")? [0-9]{3} "é"') == 2 + 3 + 2
    assert max_grammar_bytes("root ::= §") is None                      # syntax it does not know


# ------------------------------------------------------------------------------------------ the adapter's cap


class _RecordingEngine(FunctionEngine):
    """A fake engine that keeps each request's max_tokens."""

    def __init__(self, fn: Any) -> None:
        super().__init__(fn)
        self.max_tokens: list[int | None] = []

    def complete(self, request: Any) -> Any:
        self.max_tokens.append(request.config.max_tokens)
        return super().complete(request)


def _gguf_lm(answer: dict[str, Any], max_tokens: int = 512) -> tuple[dspy.LM, _RecordingEngine]:
    engine = _RecordingEngine(lambda messages, schema: answer)
    return dspy.LM("gguf/smollm2-135m", engine=engine, cache=False, temperature=0.0, max_tokens=max_tokens,
                   num_retries=0), engine


def test_a_bounded_request_caps_max_tokens_on_gguf_models(tmp_path):
    lm, engine = _gguf_lm({"output": 12})
    honed.configure(model=lm, cache=False, cache_dir=tmp_path / "cache")
    program = Transform(output_type="int")
    assert program(text="how many?").output == 12
    bound = max_output_tokens(output_schema(program.predict.signature))
    assert engine.max_tokens == [bound] and bound == len('{ "output" : -1234567890123456 } ')


def test_the_cap_never_raises_max_tokens_and_skips_unbounded_and_remote_requests(tmp_path):
    adapter = HonedAdapter()
    small, _ = _gguf_lm({}, max_tokens=8)
    kwargs: dict[str, Any] = {}
    adapter._set_response_format(small, kwargs, _signature(int))
    assert kwargs.get("max_tokens", 8) == 8
    big, _ = _gguf_lm({})
    kwargs = {"max_tokens": 20}                      # a predictor's own max_tokens, below the bound
    adapter._set_response_format(big, kwargs, _signature(int))
    assert kwargs["max_tokens"] == 20
    kwargs = {}
    adapter._set_response_format(big, kwargs, _signature(str))
    assert "max_tokens" not in kwargs
    remote = ScriptedLM([{"answer": 1}])
    kwargs = {}
    adapter._set_response_format(remote, kwargs, _signature(int))
    assert "max_tokens" not in kwargs and kwargs["response_format"]["type"] == "json_schema"


def test_text_gold_values_of_number_fields_are_written_as_numbers_in_demos():
    adapter = HonedAdapter()
    sig = _signature(int)
    assert adapter.format_assistant_message_content(sig, {"answer": "12"}) == '{"answer": 12}'
    assert adapter.format_assistant_message_content(sig, {"answer": "twelve"}) == '{"answer": "twelve"}'
    assert adapter.format_assistant_message_content(_signature(str), {"answer": "12"}) == '{"answer": "12"}'


# ------------------------------------------------------------------------------------------ artifacts and metric


@pytest.mark.parametrize("make", [
    lambda: Transform(input_field="question", output_field="answer", output_type="int"),
    lambda: Transform(input_field="word", output_field="plural", max_chars=40),
    lambda: ReasonThenAnswer(input_field="question", output_field="answer", output_type="float"),
    lambda: honed.load_task("sum").program(),
])
def test_typed_programs_round_trip_through_an_artifact(tmp_path, make):
    program = make()
    path = tmp_path / "p.json"
    save(program, path)
    loaded = load(path)
    assert loaded.init_args == program.init_args
    for (name, before), (_, after) in zip(program.named_predictors(), loaded.named_predictors(), strict=True):
        for field, info in before.signature.fields.items():
            again = after.signature.fields[field]
            assert (again.annotation, again.metadata) == (info.annotation, info.metadata), (name, field)
        assert output_schema(after.signature) == output_schema(before.signature)


def test_an_unbounded_transform_keeps_its_old_init_args():
    assert Transform().init_args == {"input_field": "text", "output_field": "output", "instructions": None}


def test_exact_match_compares_numbers_as_numbers():
    metric = ExactMatch("answer")
    gold = dspy.Example(question="q", answer="5")
    assert metric(gold, dspy.Prediction(answer=5)) == 1.0
    assert metric(gold, dspy.Prediction(answer=5.0)) == 1.0
    assert metric(gold, dspy.Prediction(answer=6)) == 0.0
    negative = dspy.Example(question="q", answer="-3")
    assert metric(negative, dspy.Prediction(answer=-3)) == 1.0
    assert metric(negative, dspy.Prediction(answer=3)) == 0.0      # text normalization would strip the sign
    assert metric(dspy.Example(question="q", answer="2.50"), dspy.Prediction(answer=2.5)) == 1.0
    assert metric(dspy.Example(question="q", answer="x", answers=["7", "seven"]), dspy.Prediction(answer=7)) == 1.0
    assert metric(dspy.Example(question="q", answer="1"), dspy.Prediction(answer=True)) == 0.0


def test_an_int_task_evaluates_end_to_end_on_a_fake_model(tmp_path):
    task = honed.load_task("sum")
    honed.configure(model=ScriptedLM(lambda messages, schema: {"total": 0}), cache_dir=tmp_path / "cache")
    examples = [dspy.Example(numbers=text, total=total).with_inputs("numbers") for text, total in
                (("0 0", "0"), ("1 2", "3"))]
    report = honed.evaluate(task.program(), examples, task.metric, progress=False)
    assert [r.prediction.total for r in report.results] == [0, 0]
    assert [r.score for r in report.results] == [1.0, 0.0]


# ------------------------------------------------------------------------------------------ the embedded model


@pytest.mark.model
@pytest.mark.skipif(not BBH_DIR.is_dir(), reason="no BBH data")
def test_object_counting_answers_are_a_few_tokens_on_the_embedded_model(embedded):
    task = honed.load_task("bbh/object_counting", bbh_dir=BBH_DIR)
    program = task.program()
    lm = dspy.settings.lm
    for example in task.test[:3]:
        start = len(lm.history)
        prediction = program(**example.inputs())
        assert isinstance(prediction.answer, int)
        (entry,) = lm.history[start:]
        assert entry["usage"]["completion_tokens"] <= 16


@pytest.mark.model
def test_the_grammar_ends_bounded_text_on_the_embedded_model(embedded):
    long_story = Transform(input_field="topic", output_field="story", max_chars=5,
                           instructions="Write a very long story about the topic, with many paragraphs.")
    assert len(long_story(topic="a cat").story) <= 5
    # a bound in the thousands compiles and decodes (5000 nested groups would crash llama.cpp)
    roomy = Transform(input_field="topic", output_field="story", max_chars=5000, instructions="Name the topic.")
    assert isinstance(roomy(topic="a cat").story, str)
