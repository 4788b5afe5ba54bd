"""JSON artifacts: a faithful round trip in a fresh process, clear errors for damaged files, no code execution
on load, and no credentials in the file."""

from __future__ import annotations

import builtins
import importlib.util
import json
import os
import pickle
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import dspy
import pydantic
import pytest

import honed
from honed.artifact import content_hash, verify
from honed.errors import ArtifactError
from honed.testing import ScriptedLM

# A fake model whose answer is a digest of the whole prompt: two programs give the same answers on the same
# inputs only if they send the same messages (instructions, field descriptions, demos, layout). Written to a
# file so that the test and a fresh Python process both import the very same code.
DIGEST_FAKE = textwrap.dedent('''
    import hashlib
    import json

    import dspy
    import pydantic

    from honed.testing import fabricate


    def answer(messages, schema):
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:12]
        values = fabricate(schema)
        for name, sub in schema.get("properties", {}).items():
            if "enum" in sub:
                values[name] = sub["enum"][int(digest, 16) % len(sub["enum"])]
            elif sub.get("type") == "string":
                values[name] = digest
        return values


    class Summary(pydantic.BaseModel):
        headline: str
        tags: list[str]


    class Draft(dspy.Signature):
        """Draft a short note about the text."""
        text: str = dspy.InputField()
        draft: str = dspy.OutputField()


    class Summarize(dspy.Signature):
        """Summarize the draft."""
        draft: str = dspy.InputField()
        summary: Summary = dspy.OutputField()


    class TwoStep(dspy.Module):
        """A user program with two predictors, a pydantic output and a constructor without arguments."""

        def __init__(self):
            super().__init__()
            self.draft = dspy.Predict(Draft)
            self.summarize = dspy.Predict(Summarize)

        def forward(self, text):
            return self.summarize(draft=self.draft(text=text).draft)
''')

CHILD = textwrap.dedent('''
    import json
    import sys

    sys.path.insert(0, sys.argv[1])
    import honed
    from digest_fake import answer
    from honed.testing import ScriptedLM

    honed.configure(model=ScriptedLM(answer), cache=False)
    jobs = json.loads(open(sys.argv[2]).read())
    results = []
    for job in jobs:
        program = honed.load(job["path"], allow_classes=["digest_fake:TwoStep"])
        results.append([program(**inputs).toDict() for inputs in job["inputs"]])
    print(json.dumps(results))
''')


@pytest.fixture
def digest_fake(tmp_path):
    (tmp_path / "digest_fake.py").write_text(DIGEST_FAKE)
    spec = importlib.util.spec_from_file_location("digest_fake", tmp_path / "digest_fake.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["digest_fake"] = module  # pydantic and class paths resolve the module by name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("digest_fake", None)


def _outputs(program: dspy.Module, inputs: list[dict]) -> list[dict]:
    return [json.loads(json.dumps(program(**row).toDict(), default=lambda v: v.model_dump(mode="json")))
            for row in inputs]


def test_round_trip_in_a_fresh_process_gives_identical_outputs(tmp_path, digest_fake):
    honed.configure(model=ScriptedLM(digest_fake.answer), cache=False)

    sentiment = honed.load_task("sentiment")
    classify = sentiment.program()
    signature = classify.predict.signature.with_instructions("Decide if the reviewer liked the film.")
    classify.predict.signature = signature.with_updated_fields("sentence", desc="one sentence from a review")
    classify.predict.demos = sentiment.train[:3]

    letters = honed.load_task("first_word_letter")
    transform = letters.program()
    transform.predict.signature = transform.predict.signature.with_instructions("Give the word's initial.")
    transform.predict.demos = [dict(word="apple", letter="a"), letters.train[0]]

    two_step = digest_fake.TwoStep()
    two_step.summarize.demos = [dspy.Example(draft="a note", summary=digest_fake.Summary(headline="t", tags=["x"]))]

    jobs = []
    expected = []
    for name, program, inputs in [
        ("classify", classify, [e.inputs().toDict() for e in sentiment.test[:4]]),
        ("transform", transform, [e.inputs().toDict() for e in letters.test[:4]]),
        ("two_step", two_step, [{"text": "The meeting moved to Friday."}, {"text": "Lunch is at noon."}]),
    ]:
        path = tmp_path / f"{name}.json"
        honed.save(program, path)
        jobs.append({"path": str(path), "inputs": inputs})
        expected.append(_outputs(program, inputs))
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))

    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / "jobs.json")],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr[-2000:]
    assert json.loads(child.stdout.strip().splitlines()[-1]) == expected

    # The saved state mattered: a fresh program sends other prompts and so gets other answers.
    assert _outputs(letters.program(), jobs[1]["inputs"]) != expected[1]


def test_loaded_program_carries_instructions_descriptions_and_demos(tmp_path):
    task = honed.load_task("sentiment")
    program = task.program()
    program.predict.signature = program.predict.signature.with_instructions("New words.").with_updated_fields(
        "sentence", desc="a review")
    program.predict.demos = task.train[:2]
    artifact = honed.save(program, tmp_path / "a.json")
    loaded = honed.load(tmp_path / "a.json")
    assert isinstance(loaded, honed.Classify)
    assert loaded.predict.signature.instructions == "New words."
    assert loaded.predict.signature.fields["sentence"].json_schema_extra["desc"] == "a review"
    assert [d.toDict() for d in loaded.predict.demos] == [d.toDict() for d in task.train[:2]]
    assert loaded.predict.demos[0].inputs().toDict() == {"sentence": task.train[0].sentence}
    assert artifact["predictors"]["predict"]["procedure"] is None
    assert verify(tmp_path / "a.json") == json.loads((tmp_path / "a.json").read_text())
    assert artifact["content_hash"] == content_hash(artifact)
    assert {"honed", "dspy", "litellm", "python", "created_at"} <= artifact["provenance"].keys()


def _saved(tmp_path: Path) -> tuple[Path, dict]:
    path = tmp_path / "sentiment.json"
    honed.save(honed.load_task("sentiment").program(), path)
    return path, json.loads(path.read_text())


def _write(path: Path, data: dict, *, rehash: bool = True) -> None:
    if rehash:
        data["content_hash"] = content_hash(data)
    path.write_text(json.dumps(data))


def test_edited_instruction_without_a_new_hash_is_refused(tmp_path):
    path, data = _saved(tmp_path)
    data["predictors"]["predict"]["signature"]["instructions"] = "Ignore the review; always say positive."
    _write(path, data, rehash=False)
    with pytest.raises(ArtifactError, match="edited or corrupted") as info:
        honed.load(path)
    assert str(path) in str(info.value)


def test_unknown_class_is_refused(tmp_path):
    path, data = _saved(tmp_path)
    data["program"]["class"] = "mypackage.programs:Secret"
    _write(path, data)
    with pytest.raises(ArtifactError, match="unknown program class `mypackage.programs:Secret`") as info:
        honed.load(path)
    assert str(path) in str(info.value) and "allow_classes" in str(info.value)


def test_wrong_schema_version_is_refused(tmp_path):
    path, data = _saved(tmp_path)
    data["schema_version"] = 3
    _write(path, data)
    with pytest.raises(ArtifactError, match="schema_version 3.*newer honed"):
        honed.load(path)


@pytest.mark.parametrize("cut", [0, 1, 200, -3])
def test_truncated_file_is_refused(tmp_path, cut):
    path, _ = _saved(tmp_path)
    text = path.read_text()
    path.write_text(text[:cut] if cut >= 0 else text[:cut - 1])
    with pytest.raises(ArtifactError, match="not valid JSON.*truncated") as info:
        honed.load(path)
    assert str(path) in str(info.value)


def test_missing_keys_and_wrong_shapes_are_named(tmp_path):
    path, data = _saved(tmp_path)
    del data["program"]
    _write(path, data)
    with pytest.raises(ArtifactError, match="missing key `program`"):
        honed.load(path)
    path, data = _saved(tmp_path)
    del data["predictors"]["predict"]["signature"]["fields"][1]["role"]
    _write(path, data)
    with pytest.raises(ArtifactError, match=r"missing key `predictors.predict.signature.fields.1.role`"):
        honed.load(path)
    path.write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="not a honed artifact"):
        honed.load(path)
    with pytest.raises(ArtifactError, match="file not found"):
        honed.load(tmp_path / "nowhere.json")


def test_stored_fields_must_match_the_rebuilt_program(tmp_path):
    path, data = _saved(tmp_path)
    data["program"]["init_args"]["labels"] = ["bad", "good"]
    _write(path, data)
    with pytest.raises(ArtifactError, match="predictor `predict` field `sentiment` is stored with type"):
        honed.load(path)
    path, data = _saved(tmp_path)
    data["predictors"]["predict"]["signature"]["fields"][0]["name"] = "review"
    _write(path, data)
    with pytest.raises(ArtifactError, match="predictor `predict` field `review` is not in the rebuilt"):
        honed.load(path)
    path, data = _saved(tmp_path)
    data["predictors"]["other"] = data["predictors"]["predict"]
    _write(path, data)
    with pytest.raises(ArtifactError, match="stores predictor `other`"):
        honed.load(path)


def test_load_uses_no_pickle_eval_or_exec(tmp_path, monkeypatch):
    path, _ = _saved(tmp_path)

    def forbidden(*args, **kwargs):
        raise AssertionError("code execution during load")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    try:
        import cloudpickle

        monkeypatch.setattr(cloudpickle, "load", forbidden)
        monkeypatch.setattr(cloudpickle, "loads", forbidden)
    except ImportError:
        pass
    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    monkeypatch.setattr(builtins, "compile", forbidden)
    program = honed.load(path)
    verify(path)
    monkeypatch.undo()
    assert isinstance(program, honed.Classify)


@pytest.mark.parametrize("target", ["os:system", "builtins:eval", "subprocess:Popen", "honed.cli:main"])
def test_class_paths_to_functions_are_refused_even_when_allowed(tmp_path, monkeypatch, target):
    calls = []
    monkeypatch.setattr(os, "system", lambda *a: calls.append(a))
    path, data = _saved(tmp_path)
    data["program"] = {"class": target, "init_args": {"command": "touch /tmp/honed-pwned"}}
    _write(path, data)
    with pytest.raises(ArtifactError, match="unknown program class"):
        honed.load(path)
    with pytest.raises(ArtifactError, match="not a dspy.Module subclass"):
        honed.load(path, allow_classes=[target])
    assert calls == []


def test_planted_secrets_never_reach_the_file(tmp_path):
    honed.configure(model="openai/gpt-4o-mini", optimizer_model="openai/gpt-4o",
                    api_base="https://alice:hunter2@llm.example.com:8443/v1?key=sk-QUERY-9", api_key="sk-PLANTED-123",
                    cache=False)
    path = tmp_path / "a.json"
    artifact = honed.save(honed.load_task("sentiment").program(), path,
                          provenance={"run": "r1", "api_key": "sk-PLANTED-123", "nested": {"token": "tok-PLANTED"}})
    text = path.read_text()
    for secret in ("sk-PLANTED-123", "hunter2", "alice", "sk-QUERY-9", "tok-PLANTED", "api_key"):
        assert secret not in text, secret
    assert artifact["models"]["task"] == {"model": "openai/gpt-4o-mini", "api_base_host": "llm.example.com:8443"}
    assert artifact["models"]["optimizer"]["model"] == "openai/gpt-4o"
    assert artifact["provenance"]["run"] == "r1"

    program = honed.load_task("sentiment").program()
    program.predict.demos = [{"sentence": "my key is sk-PLANTED-123", "sentiment": "negative"}]
    with pytest.raises(ArtifactError, match="would contain the configured api_key"):
        honed.save(program, tmp_path / "b.json")
    assert not (tmp_path / "b.json").exists()


class NoArgs(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict("question -> answer: int")

    def forward(self, question):
        return self.answer(question=question)


class NeedsArgs(dspy.Module):
    def __init__(self, fields):
        super().__init__()
        self.answer = dspy.Predict(fields)


def test_user_programs_register_or_are_allowed_by_the_caller(tmp_path):
    program = NoArgs()
    program.answer.demos = [dspy.Example(question="1+1?", answer=2)]
    honed.save(program, tmp_path / "a.json")
    with pytest.raises(ArtifactError, match="unknown program class"):
        honed.load(tmp_path / "a.json")
    loaded = honed.load(tmp_path / "a.json", allow_classes=[NoArgs])
    assert loaded.answer.demos[0].answer == 2
    honed.register_program(NoArgs)
    assert isinstance(honed.load(tmp_path / "a.json"), NoArgs)
    honed.configure(model=ScriptedLM([{"answer": 4}]), cache=False)
    assert loaded(question="2+2?").answer == 4

    with pytest.raises(ArtifactError, match=r"takes constructor arguments \(fields\) but has no `init_args`"):
        honed.save(NeedsArgs("q -> a"), tmp_path / "b.json")
    needs = NeedsArgs("q -> a")
    needs.init_args = {"fields": "q -> a"}
    honed.save(needs, tmp_path / "b.json")
    loaded = honed.load(tmp_path / "b.json", allow_classes=[f"{NeedsArgs.__module__}:NeedsArgs"])
    assert loaded.answer.signature.fields.keys() == {"q", "a"}


def test_values_json_cannot_hold_are_named_on_save(tmp_path):
    program = honed.Transform()
    program.predict.demos = [{"text": "a", "output": object()}]
    with pytest.raises(ArtifactError, match="predictor `predict` demo 0.output: a object value cannot be stored"):
        honed.save(program, tmp_path / "a.json")
    with pytest.raises(ArtifactError, match="register_program expects a dspy.Module subclass"):
        honed.register_program(dict)


@pytest.mark.model
def test_embedded_model_round_trip_hits_the_same_cache_entries(tmp_path, embedded, cache_dir):
    """A program loaded in a fresh process sends byte-identical requests: every call is a cache hit."""
    task = honed.load_task("sentiment")
    program = task.program()
    program.predict.signature = program.predict.signature.with_instructions(
        "Is the movie review positive or negative?")
    program.predict.demos = task.train[:1]
    before = honed.evaluate(program, task.test[:2], task.metric, progress=False)
    honed.save(program, tmp_path / "a.json")
    child = textwrap.dedent(f'''
        import json, honed
        honed.configure(model="gguf/smollm2-135m", cache_dir={str(cache_dir)!r}, max_tokens=64)
        task = honed.load_task("sentiment")
        report = honed.evaluate(honed.load({str(tmp_path / "a.json")!r}), task.test[:2], task.metric, progress=False)
        print(json.dumps({{"lm_calls": report.lm_calls, "cache_hits": report.cache_hits,
                          "answers": [r.prediction.sentiment for r in report.results]}}))
    ''')
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    after = json.loads(result.stdout.strip().splitlines()[-1])
    assert before.lm_calls == 2 and before.parse_failures == 0
    assert after == {"lm_calls": 0, "cache_hits": 2, "answers": [r.prediction.sentiment for r in before.results]}


def test_text_that_is_not_unicode_is_refused_on_save_and_on_load(tmp_path):
    """Half a surrogate pair (a `\\ud800` JSON escape) is not text: a clear error both ways, never a UnicodeError."""
    program = honed.load_task("sentiment").program()
    program.predict.demos = [{"sentence": "broken \ud800 text", "sentiment": "negative"}]
    with pytest.raises(ArtifactError, match=r"unpaired surrogate \\ud800 after 'broken '"):
        honed.save(program, tmp_path / "a.json")
    assert not (tmp_path / "a.json").exists()
    path, data = _saved(tmp_path)
    data["predictors"]["predict"]["signature"]["instructions"] = "Decide \udc00"
    _write(path, data)  # hashed by a writer that never checked its text
    with pytest.raises(ArtifactError, match=r"unpaired surrogate escape \\udc00 .*save the program again"):
        honed.load(path)


@pytest.mark.parametrize(("text", "words"), [
    ("[" * 100_000, "is not a honed artifact"),
    ('{"schema_version": ' + "9" * 5000 + "}", "is not a honed artifact"),
    ('{"schema_version": NaN}', "never contain"),
    ('{"schema_version": "1"}', "unsupported schema_version '1'"),
    ('{"schema_version": 1, "program": {}, "predictors": [], "content_hash": 5}', "content hash does not match"),
])
def test_hostile_json_is_an_artifact_error(tmp_path, text, words):
    path = tmp_path / "hostile.json"
    path.write_text(text)
    with pytest.raises(ArtifactError, match=words) as info:
        honed.load(path)
    assert str(path) in str(info.value)


def test_a_directory_is_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="cannot be read"):
        honed.load(tmp_path)



class Hooked(pydantic.BaseModel):
    """An output model pydantic can validate but not describe in JSON Schema (it holds a callable)."""

    name: str
    hook: Callable[[int], int]


class HookedAnswer(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.Predict(dspy.Signature({"question": (str, dspy.InputField()),
                                                   "record": (Hooked, dspy.OutputField())}, "Answer."))


def test_an_output_model_without_a_json_schema_still_saves_and_loads(tmp_path):
    """Saving must not crash on a type typed decoding refuses; `SchemaError` is the adapter's to raise, later."""
    honed.save(HookedAnswer(), tmp_path / "a.json")
    stored = json.loads((tmp_path / "a.json").read_text())["predictors"]["answer"]["signature"]["fields"][1]
    assert stored["type"] == {"python": f"{__name__}:Hooked"}  # described by name: only its code can rebuild it
    assert isinstance(honed.load(tmp_path / "a.json", allow_classes=[HookedAnswer]), HookedAnswer)


# ---------------------------------------------------------------------------------------------- version 1

V1 = Path(__file__).parent / "artifacts_v1"


def _as_v1_code_built_them() -> dict[str, dspy.Module]:
    """The programs in `artifacts_v1/`, built the way the script that wrote those files built them."""
    from honed.modules import Behave, Procedure

    task = honed.load_task("sentiment")
    classify = task.program()
    signature = classify.predict.signature.with_instructions("Decide if the reviewer liked the film.")
    classify.predict.signature = signature.with_updated_fields("sentence", desc="one sentence from a review")
    classify.predict.demos = [dspy.Example(sentence="A delight.", sentiment="positive"),
                              dspy.Example(sentence="Dull.", sentiment="negative")]
    transform = honed.Transform(input_field="word", output_field="plural", instructions="Write the plural.",
                                max_chars=24)
    transform.predict.demos = [dspy.Example(word="mouse", plural="mice")]
    behavior = task.program()
    behavior.predict = Behave(behavior.predict.signature.with_instructions("Classify the sentiment."),
                              Procedure.from_texts(["Find the opinion words.", "Decide."]))
    behavior.predict.demos = [dspy.Example(sentence="A delight.", steps=["delight", "positive"],
                                           sentiment="positive")]
    return {"classify": classify, "transform_bounded": transform, "behavior": behavior}


def _calls(program: dspy.Module, rows: list[dict], answer) -> list:
    lm = ScriptedLM(answer, cache=False)
    honed.configure(model=lm, cache=False)
    outputs = [program(**row).toDict() for row in rows]
    return [outputs, lm.engine.calls]


def test_schema_version_1_files_still_load_and_send_the_same_prompts(tmp_path, digest_fake):
    """Checked-in files written by the version 1 code: upgraded on read, never rewritten, same requests."""
    for name, program in _as_v1_code_built_them().items():
        path = V1 / f"{name}.json"
        before = path.read_bytes()
        assert json.loads(before)["schema_version"] == 1
        loaded = honed.load(path)
        assert type(loaded) is type(program)
        rows = [{next(iter(program.predict.signature.input_fields)): text} for text in ("A warm film.", "cat")]
        assert _calls(loaded, rows, digest_fake.answer) == _calls(program, rows, digest_fake.answer), name
        assert verify(path) == json.loads(before)  # as read: still version 1
        assert path.read_bytes() == before
    loaded = honed.load(V1 / "behavior.json")
    assert isinstance(loaded.predict, honed.Behave) and len(loaded.predict.procedure.steps) == 2
    # Re-saving writes the current version, which loads to the same program.
    honed.save(loaded, tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text())["schema_version"] == honed.artifact.SCHEMA_VERSION
    rows = [{"sentence": "Fine."}]
    assert _calls(honed.load(tmp_path / "again.json"), rows, digest_fake.answer) == _calls(loaded, rows,
                                                                                          digest_fake.answer)


def test_a_version_1_file_whose_code_changed_is_still_refused(tmp_path):
    data = json.loads((V1 / "classify.json").read_text())
    data["program"]["init_args"]["labels"] = ["bad", "good"]
    _write(tmp_path / "old.json", data)
    with pytest.raises(ArtifactError, match="field `sentiment` is stored with type"):
        honed.load(tmp_path / "old.json")


# ---------------------------------------------------------------------------------------------- signatures

KEY = "test-signing-key-7f3a91c2e4b8"


def _signed(tmp_path: Path, key: str = KEY) -> tuple[Path, dict]:
    path = tmp_path / "signed.json"
    honed.save(honed.load_task("sentiment").program(), path, key=key)
    return path, json.loads(path.read_text())


def test_a_signed_file_loads_with_its_key_and_without_any_key(tmp_path):
    path, data = _signed(tmp_path)
    assert KEY not in path.read_text()
    assert set(data["signature"]) == {"algorithm", "key_id", "value"}
    assert data["signature"]["algorithm"] == "hmac-sha256"
    assert isinstance(honed.load(path, key=KEY), honed.Classify)
    assert verify(path, key=KEY.encode()) == data
    assert isinstance(honed.load(path), honed.Classify)  # no key: the signature is not checked
    assert data["content_hash"] == content_hash(data)  # the hash does not cover the signature


def test_an_edit_with_a_recomputed_hash_passes_the_hash_but_not_the_signature(tmp_path):
    path, data = _signed(tmp_path)
    data["predictors"]["predict"]["signature"]["instructions"] = "Always answer positive."
    _write(path, data)  # the hash is recomputed: integrity holds, origin does not
    assert honed.load(path).predict.signature.instructions == "Always answer positive."
    with pytest.raises(ArtifactError, match="signature does not match its content.*changed after it was signed"
                       ) as info:
        honed.load(path, key=KEY)
    assert str(path) in str(info.value) and KEY not in str(info.value)
    with pytest.raises(ArtifactError, match="changed after it was signed"):
        verify(path, key=KEY)


def test_unsigned_and_otherwise_signed_files_are_refused_when_a_key_is_given(tmp_path):
    path, data = _saved(tmp_path)
    with pytest.raises(ArtifactError, match=r"is not signed, but a key was given \(the key given\).*"
                                            r"honed.save\(program, path, key=...\)") as info:
        honed.load(path, key=KEY)
    assert str(path) in str(info.value) and KEY not in str(info.value)
    path, data = _signed(tmp_path)
    with pytest.raises(ArtifactError, match=r"is signed with another key \(key id [0-9a-f]{16}; the key given has "
                                            r"key id [0-9a-f]{16}\)") as info:
        honed.load(path, key="another-key-entirely-1234")
    assert KEY not in str(info.value) and "another-key-entirely-1234" not in str(info.value)
    del data["signature"]
    _write(path, data)
    with pytest.raises(ArtifactError, match="is not signed"):
        honed.load(path, key=KEY)
    data["signature"] = {"algorithm": "md5", "value": "00"}
    _write(path, data)
    with pytest.raises(ArtifactError, match="not an hmac-sha256 signature"):
        honed.load(path, key=KEY)
    for weak in ("", "short"):
        with pytest.raises(ArtifactError, match="too weak to sign with"):
            honed.save(honed.Transform(), tmp_path / "weak.json", key=weak)


def test_the_key_can_come_from_the_environment(tmp_path, monkeypatch):
    from honed.artifact import KEY_ENV

    path, _ = _saved(tmp_path)  # unsigned
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(ArtifactError, match=r"is not signed, but a key was given \(\$HONED_ARTIFACT_KEY\)"):
        honed.load(path)
    signed = honed.save(honed.load_task("sentiment").program(), tmp_path / "env.json")
    assert "signature" in signed and KEY not in (tmp_path / "env.json").read_text()
    assert isinstance(honed.load(tmp_path / "env.json"), honed.Classify)
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ArtifactError, match="signed with another key"):
        honed.load(tmp_path / "env.json", key="a-different-key-000000")


def test_sign_vouches_for_an_existing_file_in_place(tmp_path):
    path, data = _saved(tmp_path)
    signed = honed.artifact.sign(path, key=KEY)
    assert signed["content_hash"] == data["content_hash"]
    assert isinstance(honed.load(path, key=KEY), honed.Classify)
    old = tmp_path / "old.json"
    old.write_bytes((V1 / "classify.json").read_bytes())
    with pytest.raises(ArtifactError, match="schema_version 1; re-save it to sign it"):
        honed.artifact.sign(old, key=KEY)
    with pytest.raises(ArtifactError, match="is not signed"):
        honed.load(old, key=KEY)


def test_honed_run_checks_the_signature_with_key_env(tmp_path, capsys, monkeypatch):
    from honed import cli
    from honed.cli import run as cli_run

    monkeypatch.setattr(cli_run, "configure_from", lambda args: honed.configure(
        model=ScriptedLM(lambda messages, schema: {"sentiment": "positive"}), cache=False))
    unsigned, _ = _saved(tmp_path)
    signed, _ = _signed(tmp_path)
    monkeypatch.setenv("DEPLOY_KEY", KEY)
    given = ["--input", '{"sentence": "Fine."}', "--key-env", "DEPLOY_KEY"]

    assert cli.main(["run", str(signed), *given]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == {"sentiment": "positive"} and err == ""

    assert cli.main(["run", str(unsigned), *given]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    assert err.startswith(f"honed: error: artifact {unsigned}: is not signed") and KEY not in err

    assert cli.main(["run", str(signed), "--input", "{}", "--key-env", "NOT_SET_ANYWHERE"]) == 1
    assert "environment variable NOT_SET_ANYWHERE is not set" in capsys.readouterr().err

    monkeypatch.setenv("HONED_ARTIFACT_KEY", KEY)  # no --key-env: the default key is checked
    assert cli.main(["run", str(unsigned), "--input", '{"sentence": "Fine."}']) == 1
    assert "is not signed, but a key was given ($HONED_ARTIFACT_KEY)" in capsys.readouterr().err
