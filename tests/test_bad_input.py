"""Inputs a model or the grammar cannot take: a row longer than the context, an output type with no JSON form.

Each must end in honed's own error, naming the numbers or the field, before a token is generated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import dspy
import pydantic
import pytest

import honed
from honed.adapter import check_program
from honed.errors import ContextLengthExceeded, SchemaError
from honed.models import gguf
from honed.models.schema import check_grammar, output_schema
from honed.testing import SchemaLM, ScriptedLM

# ---------------------------------------------------------------------------------------------- context


class FakeLlama:
    """The parts of `llama_cpp.Llama` the provider uses: one token per word, a chat template, a context size.

    `create_chat_completion` records what it was asked to generate; the probe must never reach it.
    """

    chat_format = "fake"
    _chat_handlers: dict = {}

    n_batch = 64

    def __init__(self, n_ctx: int) -> None:
        self.context = n_ctx
        self.input_ids = [0] * n_ctx  # what the context's KV cells hold: `n_tokens` of them
        self.n_tokens = 0
        self.generated: list[int] = []
        self.answer: dict[str, Any] = {"sentiment": "positive"}
        self.chat_handler = self._handler

    def n_ctx(self) -> int:
        return self.context

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [0] * (len(text.split()) + int(add_bos))

    @staticmethod
    def _handler(llama: Any, messages: list, **kwargs: Any) -> Any:
        rendered = " ".join(f"<{m['role']}> {m['content']} </{m['role']}>" for m in messages) + " <assistant>"
        return llama.create_completion(prompt=llama.tokenize(rendered.encode()), max_tokens=kwargs.get("max_tokens"))

    def create_completion(self, prompt: Any, **kwargs: Any) -> Any:
        raise AssertionError("the fake generates through create_chat_completion only")

    def create_chat_completion(self, messages: list, max_tokens: int, **kwargs: Any) -> dict:
        self.generated.append(max_tokens)
        return {"choices": [{"message": {"content": json.dumps(self.answer)}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 5}}


def test_prompt_tokens_are_counted_through_the_chat_template_without_generating():
    llama = FakeLlama(100)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}]
    # "<system> Be brief. </system> <user> one two three </user> <assistant>" is 10 words, plus the BOS token.
    assert gguf.count_prompt_tokens(llama, messages) == 11
    assert llama.generated == []


def test_a_handler_that_cannot_be_probed_falls_back_to_the_messages_text():
    llama = FakeLlama(100)

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("this handler does something else")

    llama.chat_handler = broken
    assert gguf.count_prompt_tokens(llama, [{"role": "user", "content": "a b c d"}]) == 1 + 1 + 4
    assert llama.generated == []


@pytest.mark.parametrize(("prompt", "max_tokens", "allowed"), [
    (100, 512, 412),     # the answer may use what the prompt leaves: max_tokens clamped
    (10, 64, 64),        # room to spare: max_tokens unchanged
    (480, 512, 32),      # exactly MIN_ANSWER_TOKENS left
    (505, 4, 4),         # a small max_tokens needs only that much room
])
def test_prompt_budget_clamps_max_tokens_to_the_room_left(prompt, max_tokens, allowed):
    assert gguf.prompt_budget("gguf/m", prompt, 512, max_tokens) == allowed


@pytest.mark.parametrize(("prompt", "max_tokens"), [(600, 64), (512, 64), (481, 512), (509, 4)])
def test_prompt_budget_refuses_a_prompt_that_leaves_no_room_for_the_answer(prompt, max_tokens):
    with pytest.raises(ContextLengthExceeded) as info:
        gguf.prompt_budget("gguf/m", prompt, 512, max_tokens)
    error = info.value
    assert (error.prompt_tokens, error.context, error.status_code) == (prompt, 512, 400)
    reserve = min(max_tokens, gguf.MIN_ANSWER_TOKENS)
    assert f"the prompt is {prompt} tokens but gguf/m holds 512" in str(error)
    assert f"leave {reserve} tokens for the answer" in str(error) and "shorten the input" in str(error)


def test_llama_cpps_own_overflow_error_becomes_context_length_exceeded():
    with pytest.raises(ContextLengthExceeded, match="the prompt is 5026 tokens but gguf/m holds 4096"):
        gguf._raise_if_overflow("gguf/m", ValueError("Requested tokens (5026) exceed context window of 4096"))
    gguf._raise_if_overflow("gguf/m", ValueError("something else"))  # other ValueErrors are left alone


@pytest.fixture
def fake_gguf(tmp_path, monkeypatch):
    """`gguf/<tmp>/fake.gguf` served by the real provider over a FakeLlama with a 64-token context."""
    path = tmp_path / "fake.gguf"
    path.write_bytes(b"not a real model")
    llama = FakeLlama(64)
    provider = gguf.register_gguf_provider()
    monkeypatch.setitem(provider._models, path.resolve(), gguf._LoadedModel(llama))
    monkeypatch.setattr(gguf, "check_allowed", lambda model: None)  # the fake is not a real model request
    counted: list[int] = []
    real_render = gguf.rendered_prompt

    def render(llama: Any, messages: list) -> list[int] | None:
        tokens = real_render(llama, messages)
        counted.append(len(tokens or ()))
        return tokens

    monkeypatch.setattr(gguf, "rendered_prompt", render)
    honed.configure(model=f"gguf/{path}", cache=False, max_tokens=16)
    return llama, counted


def test_evaluate_counts_an_over_long_row_as_failed_and_goes_on(fake_gguf):
    llama, counted = fake_gguf
    task = honed.load_task("sentiment")
    examples = [task.test[0].copy(sentence="word " * 200), task.test[1].copy(sentence="Fine.")]
    report = honed.evaluate(task.program(), examples, task.metric, progress=False, num_threads=1)
    long, short = report.results
    assert report.n == 2 and report.errors == 1 and report.parse_failures == 0
    assert long.score == 0.0 and long.prediction is None
    assert "tokens but gguf/" in long.error and "holds 64" in long.error and "shorten the input" in long.error
    assert short.error is None and short.prediction.sentiment == "positive"
    # measured once (a 400 is never retried), and only the short row reached generation, its max_tokens intact
    assert len(counted) == 2 and counted[0] > 200 and llama.generated == [16]


def test_max_tokens_is_clamped_to_what_the_prompt_leaves(fake_gguf):
    llama, counted = fake_gguf
    honed.configure(model=dspy.settings.lm.model, cache=False, max_tokens=512)
    # an unbounded text output, so that the grammar's own bound (see test_output_types) does not cap it first
    dspy.Predict("sentence -> sentiment")(sentence="Fine.")
    assert llama.generated == [64 - counted[0]]


def test_cli_eval_names_the_over_long_row(fake_gguf, tmp_path, capsys):
    from honed.cli import main

    llama, _ = fake_gguf
    llama.answer = {"output": "yes"}
    train = _write_rows(tmp_path / "yn.train.jsonl",
                        [{"input": "yes", "output": "yes"}, {"input": "no", "output": "no"}])
    test = _write_rows(tmp_path / "yn.test.jsonl", [{"input": "yes", "output": "yes"},
                                                    {"id": "row-7", "input": "word " * 100, "output": "no"}])
    model = dspy.settings.lm.model
    argv = ["eval", "--train", str(train), "--test", str(test), "--model", model, "--threads", "1"]
    code = main([*argv, "--allow-errors"])
    out = capsys.readouterr().out
    assert code == 0 and "score 0.500 over 2 examples" in out and "parse failures 0, other errors 1" in out
    assert "first failure: example row-7: the prompt is" in out and "holds 64" in out
    assert "litellm" not in out and "Exception" not in out
    # without --allow-errors the failed row is an error, not a wrong answer: exit 1, one line saying so
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "1 of 2 examples ended in an error" in err and "holds 64" in err and err.count("\n") == 1


def test_cli_run_reports_the_over_long_input_on_its_line(fake_gguf, tmp_path, capsys):
    from honed.cli import main

    artifact = tmp_path / "sentiment.json"
    honed.save(honed.load_task("sentiment").program(), artifact)
    model = dspy.settings.lm.model
    code = main(["run", str(artifact), "--model", model, "--input", json.dumps({"sentence": "word " * 100})])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("honed: error: the program failed: the prompt is") and "holds 64" in err
    inputs = _write_rows(tmp_path / "in.jsonl", [{"sentence": "word " * 100}, {"sentence": "Fine."}])
    code = main(["run", str(artifact), "--model", model, "--inputs", str(inputs)])
    captured = capsys.readouterr()
    first, second = (json.loads(line) for line in captured.out.splitlines())
    assert code == 1 and first["error"].startswith(f"{inputs}:1: the prompt is") and second == {"sentiment": "positive"}


def test_cli_run_reads_inputs_saved_by_a_windows_editor(fake_gguf, tmp_path, capsys):
    """A BOM, CRLF line endings, and a JSON string holding U+2028 (legal in JSON, a line break to str.splitlines)."""
    from honed.cli import main

    artifact = tmp_path / "sentiment.json"
    honed.save(honed.load_task("sentiment").program(), artifact)
    inputs = tmp_path / "in.jsonl"
    inputs.write_bytes("\ufeff".encode() + b'{"sentence": "one"}\r\n\r\n'
                       + '{"sentence": "two\u2028lines\u0085here"}\r\n{"sentence": "three"}'.encode())
    code = main(["run", str(artifact), "--model", dspy.settings.lm.model, "--inputs", str(inputs)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert [json.loads(line) for line in captured.out.splitlines()] == [{"sentiment": "positive"}] * 3


# ---------------------------------------------------------------------------------------------- types


class Opaque:
    """A plain class: pydantic (and so DSPy) has no schema for it."""


class Hooked(pydantic.BaseModel):
    name: str
    hook: Callable[[int], int]


class Nested(pydantic.BaseModel):
    inner: Hooked


def _signature(annotation: Any) -> type[dspy.Signature]:
    return dspy.Signature({"text": (str, dspy.InputField()), "result": (annotation, dspy.OutputField())},
                          "Read the text.")


@pytest.mark.parametrize(("annotation", "field", "words"), [
    (Callable[[int], int], "result", "CallableSchema"),
    (type, "result", "no JSON Schema form"),
    (Hooked, "result.hook", "CallableSchema"),
    (Nested, "result.inner.hook", "CallableSchema"),
])
def test_types_without_a_json_form_name_the_field(annotation, field, words):
    with pytest.raises(SchemaError) as info:
        output_schema(_signature(annotation))
    assert info.value.field == field
    assert f"output field `{field}`" in str(info.value) and words in str(info.value)
    assert "Use str, int, float, bool" in str(info.value)


def test_a_schema_llama_cpp_refuses_names_the_field():
    signature = dspy.Signature({"text": (str, dspy.InputField()), "count": (int, dspy.OutputField()),
                                "code": (Annotated[str, pydantic.Field(pattern=r"\d+")], dspy.OutputField())}, "x")
    with pytest.raises(SchemaError, match=r'output field `code` .*pattern.*Pattern must start with "\^"') as info:
        check_grammar(signature, output_schema(signature))
    assert info.value.field == "code"


@pytest.mark.parametrize("annotation", [dict[str, Any], bytes, Any, dict[str, int]])
def test_types_with_a_json_form_are_accepted_and_parse(annotation):
    """Not every unusual type is refused: these have JSON forms, compile to grammars and parse back."""
    signature = _signature(annotation)
    check_grammar(signature, output_schema(signature))
    honed.configure(model=SchemaLM(), cache=False)
    dspy.Predict(signature)(text="hello")


def test_a_custom_class_is_refused_by_dspy_when_the_signature_is_declared():
    """A class pydantic knows nothing about never reaches honed: DSPy refuses the signature itself."""
    with pytest.raises(pydantic.PydanticSchemaGenerationError, match="Opaque"):
        _signature(Opaque)


def test_schema_errors_come_before_any_request():
    lm = ScriptedLM(lambda messages, schema: {"result": "x"})
    honed.configure(model=lm, cache=False)
    program = dspy.Predict(_signature(Hooked))
    with pytest.raises(SchemaError, match="`result.hook`"):
        check_program(program)
    with pytest.raises(SchemaError, match="`result.hook`"):
        program(text="hello")
    assert lm.engine.calls == []


class HookedProgram(dspy.Module):
    """A user program whose output type has no JSON form."""

    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict(_signature(Hooked))

    def forward(self, text):
        return self.answer(text=text)


def test_cli_refuses_an_untypable_program_before_its_first_input(fake_gguf, tmp_path, capsys, monkeypatch):
    from honed import artifact
    from honed.cli import main

    llama, counted = fake_gguf
    monkeypatch.setitem(artifact._REGISTRY, artifact.class_path(HookedProgram), HookedProgram)
    honed.save(HookedProgram(), tmp_path / "hooked.json")
    inputs = _write_rows(tmp_path / "in.jsonl", [{"text": "a"}, {"text": "b"}])
    code = main(["run", str(tmp_path / "hooked.json"), "--inputs", str(inputs), "--model", dspy.settings.lm.model])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith("honed: error: output field `result.hook` has type")
    assert counted == [] and llama.generated == []


def test_check_program_compiles_the_grammar_for_llama_cpp_servers():
    signature = dspy.Signature({"text": (str, dspy.InputField()),
                                "code": (Annotated[str, pydantic.Field(pattern=r"[0-9]+")], dspy.OutputField())}, "x")
    honed.configure(model=ScriptedLM(lambda m, s: {"code": "1"}), cache=False)
    check_program(dspy.Predict(signature))  # a remote structured-outputs model: no grammar, no complaint
    honed.configure(model=ScriptedLM(lambda m, s: {"code": "1"}), cache=False, typed_outputs="llama.cpp")
    with pytest.raises(SchemaError, match="`code`"):
        check_program(dspy.Predict(signature))


# ---------------------------------------------------------------------------------------------- real model


def _write_rows(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.model
def test_embedded_model_refuses_an_absurdly_long_row_before_generating(tmp_path):
    settings = honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "cache", max_tokens=8)
    provider = gguf.register_gguf_provider()
    task = honed.load_task("sentiment")
    before = provider.stats.calls
    report = honed.evaluate(task.program(), [task.test[0].copy(sentence="lorem ipsum " * 20_000)], task.metric,
                            progress=False)
    result = report.results[0]
    assert report.n == 1 and report.errors == 1 and result.score == 0.0
    assert "tokens but gguf/smollm2-135m holds 4096" in result.error
    assert provider.stats.calls == before, "nothing may be generated for a prompt that does not fit"
    assert settings.lm.model == "gguf/smollm2-135m"


@pytest.mark.model
def test_cli_eval_reports_the_over_long_row(tmp_path, capsys):
    """The row is refused at load, by file and line, before any model call; --allow-errors does not turn the
    refusal into a scored example, and --json prints nothing a caller could mistake for a result."""
    from honed.cli import main

    train = _write_rows(tmp_path / "yn.train.jsonl",
                        [{"input": "yes", "output": "yes"}, {"input": "no", "output": "no"}])
    test = _write_rows(tmp_path / "yn.test.jsonl", [{"id": "huge", "input": "word " * 20_000, "output": "yes"}])
    provider = gguf.register_gguf_provider()
    before = provider.stats.calls
    for extra in (["--allow-errors"], ["--json"]):
        code = main(["eval", "--train", str(train), "--test", str(test), "--cache-dir", str(tmp_path / "cache"),
                     *extra])
        captured = capsys.readouterr()
        assert code == 1 and captured.out == ""
        assert f"{test}:1: field `input` is 20,0" in captured.err  # 20,000 words: about as many tokens
        assert "tokens, too long for gguf/smollm2-135m" in captured.err
        assert "its context holds 4,096 tokens" in captured.err
    assert provider.stats.calls == before
