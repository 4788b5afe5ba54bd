"""Rows whose input cannot fit the target model's context are refused at load, naming file, line and field,
the row's tokens and the context, before any model work (`honed.programs.context_fit`).

Unit tests use a fake `ContextWindow` (one token per word) or honed.testing's fakes; the `model`-marked ones
use the embedded SmolLM2-135M's own tokenizer and context, and show that nothing reached llama.cpp, the cache
or a budget.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import dspy
import pytest

import honed
from honed.cli import main
from honed.errors import DatasetError
from honed.models.gguf import DEFAULT_N_CTX, count_prompt_tokens
from honed.models.resolve import resolve_gguf_path
from honed.programs import context_fit
from honed.programs.context_fit import (
    CONTEXT_RESERVE,
    ContextWindow,
    check_examples_fit,
    check_task_fits,
    context_window,
    fit_problem,
    refuse_unfit_inputs,
)
from honed.testing import ScriptedLM

pytestmark = pytest.mark.usefixtures("restore_dspy_settings")

WORDS = ["alpha", "river", "stone", "quiet", "table", "seven", "green", "paper"]


def words(n: int) -> str:
    return " ".join(WORDS[i % len(WORDS)] for i in range(n))


def write_rows(path: Path, inputs: list[str]) -> Path:
    path.write_text("".join(json.dumps({"input": text, "output": "yes" if i % 2 else "no"}) + "\n"
                            for i, text in enumerate(inputs)), encoding="utf-8")
    return path


class WordWindow:
    """A fake context: one token per word, and a record of every text it was asked to count."""

    def __init__(self, n_ctx: int) -> None:
        self.counted: list[str] = []
        self.window = ContextWindow("fake/words", n_ctx, self.count, "FAKE_N_CTX sets it")

    def count(self, text: str) -> int:
        self.counted.append(text)
        return len(text.split())


# ---------------------------------------------------------------------------------------------- unit


def test_an_oversized_row_is_refused_at_load_with_file_line_field_tokens_and_context(tmp_path):
    fake = WordWindow(300)
    train = write_rows(tmp_path / "t.train.jsonl", ["short one", "short two", "short three"])
    test = write_rows(tmp_path / "t.test.jsonl", ["fine", words(500), "fine again", words(900)])
    with pytest.raises(DatasetError) as info:
        honed.task_from_files(train, test, model=fake.window)
    error = info.value
    assert (error.path, error.line, error.field) == (str(test), 2, "input")
    message = str(error)
    assert message.startswith(f"{test}:2: field `input` is 500 tokens, too long for fake/words: its context holds "
                              f"300 tokens, {CONTEXT_RESERVE} of them kept for the instructions and the answer")
    assert "Shorten the row or drop it, or use a model with a larger context (FAKE_N_CTX sets it)" in message
    assert f"1 more row(s) are too long as well: {test}:4" in message
    # short rows are never tokenized: their bytes alone cannot exceed the room
    assert fake.counted == [words(500), words(900)]


def test_a_row_that_fits_loads_and_the_reserve_is_the_margin(tmp_path):
    fake = WordWindow(300)
    room = 300 - CONTEXT_RESERVE
    train = write_rows(tmp_path / "t.train.jsonl", ["a", "b"])
    test = write_rows(tmp_path / "t.test.jsonl", [words(room)])
    task = honed.task_from_files(train, test, model=fake.window)  # exactly the room: loads
    assert len(task.test) == 1
    write_rows(test, [words(room + 1)])
    with pytest.raises(DatasetError, match=f"is {room + 1} tokens"):
        honed.task_from_files(train, test, model=fake.window)
    # a smaller reserve lets it through
    check_task_fits(honed.task_from_files(train, test), fake.window, reserve=CONTEXT_RESERVE - 1)


def test_without_a_model_nothing_is_checked_and_a_training_row_is_refused_too(tmp_path):
    fake = WordWindow(200)
    train = write_rows(tmp_path / "t.train.jsonl", ["a", words(400), "b"])
    test = write_rows(tmp_path / "t.test.jsonl", ["c"])
    task = honed.task_from_files(train, test)  # no model given: loads (the CLI checks once it knows the model)
    assert fake.counted == []
    with pytest.raises(DatasetError, match=r"t\.train\.jsonl:2: field `input` is 400 tokens"):
        check_task_fits(task, fake.window)
    # a slice of the loaded examples still knows where each came from
    with pytest.raises(DatasetError, match=r"t\.train\.jsonl:2:"):
        check_examples_fit(task.train[1:], fake.window)


def test_examples_made_in_code_are_named_by_id_and_several_fields_are_summed():
    fake = WordWindow(200)
    examples = [dspy.Example(id="q7", question=words(60), context=words(80), answer="x").with_inputs(
        "question", "context")]
    with pytest.raises(DatasetError, match=r"^example q7: \(input fields `question`, `context`\) are 140 tokens"):
        check_examples_fit(examples, fake.window)
    assert fit_problem({"question": words(60), "context": words(80)}, fake.window) == (
        "input fields `question` 60, `context` 80 are 140 tokens together, too long for fake/words: its context holds "
        f"200 tokens, {CONTEXT_RESERVE} of them kept for the instructions and the answer, which leaves "
        f"{200 - CONTEXT_RESERVE} for the input. Shorten the row or drop it, or use a model with a larger context "
        "(FAKE_N_CTX sets it)")
    assert fit_problem({"question": words(10)}, fake.window) is None
    assert fit_problem({"n": 12345}, fake.window) is None  # non-text inputs count as their JSON


def test_honed_run_inputs_that_cannot_fit_become_failed_lines_before_any_runs():
    fake = WordWindow(200)
    jobs = [({"question": "short"}, "in.jsonl:1"), (None, "in.jsonl:2: not valid JSON"),
            ({"question": words(150)}, "in.jsonl:3")]
    checked = refuse_unfit_inputs(jobs, fake.window)
    assert checked[:2] == jobs[:2]
    assert checked[2][0] is None and checked[2][1].startswith(
        "in.jsonl:3: input field `question` is 150 tokens, too long for fake/words")
    lm = ScriptedLM(lambda messages, schema: {"answer": "x"})
    assert refuse_unfit_inputs(jobs, lm) == jobs  # an unknown context: nothing is refused
    assert lm.engine.calls == []


def test_a_bbh_file_names_the_example_by_its_field_path(tmp_path):
    data = {"examples": [{"input": f"q{i}", "target": "Yes" if i % 2 else "No"} for i in range(12)]}
    data["examples"][5]["input"] = words(700)
    (tmp_path / "navigate.json").write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(DatasetError) as info:
        honed.load_task("bbh/navigate", bbh_dir=tmp_path, model=WordWindow(400).window)
    assert (info.value.line, info.value.field) == (None, "examples[5].input")
    assert str(info.value).startswith(f"{tmp_path / 'navigate.json'}: field `examples[5].input` is 700 tokens")


def test_fake_and_unknown_models_are_not_checked(tmp_path, caplog):
    """A model litellm's map does not know has no known context: the data loads and one debug line says why."""
    train = write_rows(tmp_path / "t.train.jsonl", ["a", "b"])
    test = write_rows(tmp_path / "t.test.jsonl", [words(20000)])
    lm = ScriptedLM(lambda messages, schema: {"output": "no"})
    with caplog.at_level("DEBUG", logger="honed.programs"):
        honed.task_from_files(train, test, model=lm)
        honed.task_from_files(train, test, model="openai/my-local-model")
    assert context_window(lm) is None and context_window("openai/my-local-model") is None
    assert sum("not checked" in record.getMessage() for record in caplog.records) == 2
    assert lm.engine.calls == []


def test_a_remote_model_litellm_knows_is_checked_offline_with_its_tokenizer(tmp_path):
    """Sockets are blocked in unit tests: litellm's bundled model map and tokenizer serve the check."""
    window = context_window("openai/gpt-4o-mini")
    assert window is not None and window.n_ctx >= 100_000
    assert window.count("hello world") == 2
    train = write_rows(tmp_path / "t.train.jsonl", ["a", "b"])
    test = write_rows(tmp_path / "t.test.jsonl", ["fine", "hello " * window.n_ctx])
    with pytest.raises(DatasetError, match=rf"t\.test\.jsonl:2: field `input` is [\d,]+ tokens, too long for "
                                           rf"openai/gpt-4o-mini: its context holds {window.n_ctx:,} tokens"):
        honed.task_from_files(train, test, model="openai/gpt-4o-mini")


# ---------------------------------------------------------------------------------------------- embedded model

BIG_ROW_WORDS = 5000


def _big_task_files(tmp_path: Path) -> tuple[Path, Path]:
    train = write_rows(tmp_path / "big.train.jsonl", ["one", "two", "three", "four"])
    test = write_rows(tmp_path / "big.test.jsonl", ["five", words(BIG_ROW_WORDS), "six"])
    return train, test


def _provider_calls() -> int:
    return context_fit._installed_gguf_provider().stats.calls


@pytest.mark.model
def test_a_5000_word_row_is_refused_for_smollm2_at_load_fast_and_with_no_model_call(tmp_path):
    settings = honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "cache", max_tokens=64)
    train, test = _big_task_files(tmp_path)
    calls_before = _provider_calls()
    started = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        honed.task_from_files(train, test, model=settings.lm)
    elapsed = time.perf_counter() - started
    assert (info.value.path, info.value.line, info.value.field) == (str(test), 2, "input")
    tokens = int(str(info.value).split(" is ", 1)[1].split(" tokens", 1)[0].replace(",", ""))
    assert tokens >= BIG_ROW_WORDS  # SmolLM2's own tokenizer: one token or more per word
    assert f"its context holds {DEFAULT_N_CTX:,} tokens" in str(info.value)
    assert _provider_calls() == calls_before  # nothing reached llama.cpp's generation
    counts = honed.current_cache().counts()
    assert (counts.hits, counts.misses) == (0, 0)  # and nothing asked the cache
    assert elapsed < 20, f"the refusal took {elapsed:.1f}s"  # loading the 135M model, tokenizing, no generation


@pytest.mark.model
def test_the_reserve_holds_a_row_at_the_limit_with_room_for_the_answer(tmp_path):
    """A row the check lets through, one token under its limit, does fit once the uncompiled program's prompt
    is rendered around it with SmolLM2's chat template, with the provider's answer room to spare."""
    settings = honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "cache", max_tokens=64)
    window = context_window(settings.lm)
    assert window is not None and window.n_ctx == DEFAULT_N_CTX
    text = words(window.room())
    assert window.count(text) == window.room()
    train = write_rows(tmp_path / "t.train.jsonl", ["a", "b", "c"])
    test = write_rows(tmp_path / "t.test.jsonl", [text])
    task = honed.task_from_files(train, test, model=settings.lm)  # loads
    llama = context_fit._installed_gguf_provider().loaded(resolve_gguf_path("gguf/smollm2-135m")).llama
    for _, predictor in task.program().named_predictors():
        messages = settings.adapter.format(predictor.signature, [], {"input": text})
        assert count_prompt_tokens(llama, messages) + context_fit.MIN_ANSWER_TOKENS <= window.n_ctx
    with pytest.raises(DatasetError):
        honed.task_from_files(train, write_rows(tmp_path / "t2.test.jsonl", [words(window.room() + 1)]),
                              model=settings.lm)


@pytest.mark.model
def test_honed_eval_refuses_the_row_before_any_model_call(tmp_path, capsys):
    train, test = _big_task_files(tmp_path)
    calls_before = _provider_calls()
    code = main(["eval", "--train", str(train), "--test", str(test), "--model", "gguf/smollm2-135m",
                 "--cache-dir", str(tmp_path / "cache"), "--json"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"honed: error: {test}:2: field `input` is " in err and "larger context" in err
    assert _provider_calls() == calls_before


def test_probing_a_model_litellm_cannot_route_writes_nothing_to_stdout(capsys):
    """litellm prints a provider banner before it raises; `honed run` prints its answer as JSON on stdout."""
    import litellm

    from honed.programs.context_fit import _catalog_entry

    before = litellm.suppress_debug_info
    litellm.suppress_debug_info = False
    try:
        assert _catalog_entry("scripted/no-such-provider") is None
    finally:
        litellm.suppress_debug_info = before
    assert capsys.readouterr().out == ""
