"""DSPy's own modules as artifacts: `dspy.Predict`, `dspy.ChainOfThought` and modules made of them, written
the way DSPy's documentation writes them, saved, and loaded in a fresh Python process that sends the very
same prompts and returns the very same outputs. Their signatures are rebuilt from JSON, without the code
that declared them and without executing anything from the file."""

from __future__ import annotations

import builtins
import enum
import importlib
import importlib.util
import json
import pickle
import re
import subprocess
import sys
import textwrap
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import dspy
import pydantic
import pytest

import honed
from honed.artifact_signatures import SignatureSpec, rebuild_signature, signature_state
from honed.errors import ArtifactError
from honed.testing import ScriptedLM

# The fake model answers with values derived from a digest of the whole prompt and its schema, so two programs
# get the same answers only if they send the same messages. `observe` records what a program sent and
# returned, and a fingerprint of each predictor as DSPy sees it (types, field metadata, DSPy's own
# ChatAdapter prompt), so a difference an adapter happens not to render still shows.
FAKE_WORLD = textwrap.dedent('''
    import hashlib
    import json

    import dspy
    import pydantic
    from dspy.adapters.utils import get_annotation_name


    def _value(schema, seed, defs):
        if "$ref" in schema:
            return _value(defs[schema["$ref"].split("/")[-1]], seed, defs)
        if "anyOf" in schema:
            return _value(schema["anyOf"][seed % len(schema["anyOf"])], seed // 7, defs)
        if "enum" in schema:
            return schema["enum"][seed % len(schema["enum"])]
        if "const" in schema:
            return schema["const"]
        kind = schema.get("type")
        if kind == "string":
            return format(seed, "x")[: schema.get("maxLength", 10)]
        if kind == "integer":
            return seed % 97
        if kind == "number":
            return (seed % 1000) / 10
        if kind == "boolean":
            return seed % 2 == 1
        if kind == "array":
            count = max(schema.get("minItems", 0), min(2, schema.get("maxItems", 2)))
            return [_value(schema.get("items", {}), seed // (i + 3), defs) for i in range(count)]
        if kind == "object":
            if "properties" in schema:
                return {name: _value(sub, seed // (i + 5), defs)
                        for i, (name, sub) in enumerate(schema["properties"].items())}
            extra = schema.get("additionalProperties")
            return {"k": _value(extra, seed // 11, defs)} if isinstance(extra, dict) else {}
        return None


    def answer(messages, schema):
        seed = int(hashlib.sha256(json.dumps([messages, schema], sort_keys=True).encode()).hexdigest()[:15], 16)
        return _value(schema, seed, schema.get("$defs", {}))


    ADD_S = "Add an s to the end of the word."


    def plural_world(messages, schema):
        """A target that pluralizes only when its procedure tells it to, and a scripted optimizer model."""
        props, system, last = schema["properties"], messages[0]["content"], messages[-1]["content"]
        if list(props) == ["steps"] and "examples" in last:  # DraftProcedure
            return {"steps": ["Read the word.", ADD_S]}
        if "correct_answer" in last:  # a reference execution
            count = props["steps"]["minItems"]
            return {"steps": (["the word", "the word with an s"] + ["done"] * count)[:count]}
        if "action" in props:  # FixStep
            return {"action": "rewrite", "new_step": ADD_S, "second_step": ""}
        word = last.strip().splitlines()[-1]
        plural = word + "s" if ADD_S in system else word
        out = {"reasoning": f"{word} is a regular noun", "plural": plural}
        if "steps" in props:
            count = props["steps"]["minItems"]
            out["steps"] = ([word, plural] + ["ok"] * count)[:count]
        return {name: out[name] for name in props}


    def _schema(annotation):
        try:
            return pydantic.TypeAdapter(annotation).json_schema()
        except Exception as exc:
            return type(exc).__name__


    def fingerprint(program):
        out = {"class": type(program).__name__}
        for name, predictor in program.named_predictors():
            signature = predictor.signature
            inputs = {field: f"<{field}>" for field in signature.input_fields}
            out[name] = {
                "class": type(predictor).__name__, "signature": signature.__name__,
                "instructions": signature.instructions, "config": predictor.config,
                "fields": [[field, get_annotation_name(info.annotation), _schema(info.annotation),
                            info.json_schema_extra, [repr(m) for m in info.metadata], info.description]
                           for field, info in signature.fields.items()],
                "demos": [dict(demo.items()) for demo in predictor.demos],
                "chat_adapter_prompt": dspy.ChatAdapter().format(signature, predictor.demos, inputs),
            }
        return out


    def observe(program, inputs, lm):
        del lm.engine.calls[:]
        outputs = [program(**row).toDict() for row in inputs]
        record = {"outputs": outputs, "messages": list(lm.engine.calls), "fingerprint": fingerprint(program)}
        return json.loads(json.dumps(record, default=lambda v: v.model_dump(mode="json")))
''')

# Programs as DSPy's documentation writes them: string signatures, class signatures with Literal outputs and
# descriptions, a typed extraction, a two-module pipeline, the multi-hop list of predictors, a dict of them.
DOCS_PROGRAMS = textwrap.dedent('''
    from typing import Annotated, Literal

    import dspy
    import pydantic

    import honed


    class Emotion(dspy.Signature):
        """Classify emotion."""

        sentence: str = dspy.InputField()
        sentiment: Literal["sadness", "joy", "love", "anger", "fear", "surprise"] = dspy.OutputField()


    class CheckCitationFaithfulness(dspy.Signature):
        """Verify that the text is based on the provided context."""

        context: str = dspy.InputField(desc="facts here are assumed to be true")
        text: str = dspy.InputField()
        faithfulness: bool = dspy.OutputField()
        evidence: dict[str, list[str]] = dspy.OutputField(desc="Supporting evidence for claims")


    class Person(pydantic.BaseModel):
        """A person the text mentions."""

        name: str
        age: int | None = None
        roles: list[Literal["author", "subject", "other"]] = []


    class ExtractPeople(dspy.Signature):
        """Extract the people a text mentions."""

        text: str = dspy.InputField()
        people: list[Person] = dspy.OutputField()
        headline: Annotated[str, pydantic.StringConstraints(max_length=40)] = dspy.OutputField(
            desc="at most 40 characters")
        confidence: float = dspy.OutputField()
        mentions: int = dspy.OutputField(ge=0)


    @honed.register_program
    class RAG(dspy.Module):
        """Two modules: a ChainOfThought writes a query, a Predict answers from what it found."""

        def __init__(self):
            super().__init__()
            self.generate_query = dspy.ChainOfThought("question -> query")
            self.respond = dspy.Predict("context, question -> response")

        def forward(self, question):
            query = self.generate_query(question=question).query
            return self.respond(context=f"notes found for {query}", question=question)


    @honed.register_program
    class MultiHop(dspy.Module):
        """DSPy's multi-hop program: a list of query writers, one per hop."""

        def __init__(self, max_hops=2):
            super().__init__()
            self.init_args = {"max_hops": max_hops}
            self.generate_query = [dspy.ChainOfThought("context, question -> query") for _ in range(max_hops)]
            self.generate_answer = dspy.ChainOfThought("context, question -> answer")

        def forward(self, question):
            context = []
            for hop in self.generate_query:
                context.append(hop(context=context, question=question).query)
            return self.generate_answer(context=context, question=question)


    @honed.register_program
    class Router(dspy.Module):
        """A dict of predictors, one per topic."""

        def __init__(self):
            super().__init__()
            self.experts = {"math": dspy.Predict("question -> answer: float"),
                            "history": dspy.ChainOfThought("question -> answer")}

        def forward(self, topic, question):
            return self.experts[topic](question=question)
''')

CHILD = textwrap.dedent('''
    import json
    import sys

    sys.path.insert(0, sys.argv[1])
    import fake_world
    import honed
    from honed.testing import ScriptedLM

    results = {}
    for job in sorted(json.loads(open(sys.argv[2]).read()), key=lambda job: job["registered"]):
        if job["registered"]:
            import docs_programs  # noqa: F401  (its classes register themselves)
        else:  # DSPy's modules are rebuilt from the file alone: the code that declared them is not here
            assert "docs_programs" not in sys.modules
        lm = ScriptedLM(getattr(fake_world, job["world"]), cache=False)
        honed.configure(model=lm, cache=False)
        results[job["name"]] = fake_world.observe(honed.load(job["path"]), job["inputs"], lm)
    print(json.dumps(results))
''')


def _import(directory: Path, name: str, source: str) -> Any:
    (directory / f"{name}.py").write_text(source)
    spec = importlib.util.spec_from_file_location(name, directory / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # pydantic and class paths resolve the module by name
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def world(tmp_path):
    """The fake world and the docs programs, importable here and in a child process from `tmp_path`."""
    fake, docs = _import(tmp_path, "fake_world", FAKE_WORLD), _import(tmp_path, "docs_programs", DOCS_PROGRAMS)
    yield fake, docs
    for name in ("fake_world", "docs_programs"):
        sys.modules.pop(name, None)
    for cls in ("RAG", "MultiHop", "Router"):
        honed.artifact._REGISTRY.pop(f"docs_programs:{cls}", None)


def _in_fresh_process(tmp_path: Path, jobs: list[dict]) -> dict:
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    child = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path), str(tmp_path / "jobs.json")],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    return json.loads(child.stdout.strip().splitlines()[-1])


def _observed(fake: Any, program: dspy.Module, inputs: list[dict], world_name: str = "answer") -> dict:
    lm = ScriptedLM(getattr(fake, world_name), cache=False)
    honed.configure(model=lm, cache=False)
    return fake.observe(program, inputs, lm)


def _docs_programs(docs: Any) -> list[tuple[str, dspy.Module, list[dict], bool]]:
    """(name, program, inputs, needs the user's code) for each program, some carrying compiled state."""
    qa = dspy.Predict("question -> answer")
    qa.demos = [dspy.Example(question="What is 2 + 2?", answer="4")]

    cot = dspy.ChainOfThought("question -> answer")
    cot.predict.signature = cot.predict.signature.with_instructions("Answer in one short sentence.")
    cot.predict.demos = [dspy.Example(question="Capital of France?", reasoning="France's capital is Paris.",
                                      answer="Paris")]

    emotion = dspy.Predict(docs.Emotion)
    emotion.signature = emotion.signature.with_updated_fields("sentence", desc="one sentence", prefix="The sentence:")

    faithful = dspy.ChainOfThought(docs.CheckCitationFaithfulness, rationale_field=dspy.OutputField(
        prefix="Reasoning: Let's think step by step in order to", desc="${produce the faithfulness}. We ..."))

    extract = dspy.Predict(docs.ExtractPeople, temperature=0.0)
    extract.demos = [dspy.Example(text="Ada wrote notes.", people=[docs.Person(name="Ada", roles=["author"])],
                                  headline="Ada's notes", confidence=0.9, mentions=1)]

    rag = docs.RAG()
    rag.generate_query.predict.signature = rag.generate_query.predict.signature.with_instructions(
        "Write a search query for the question.")
    rag.respond.demos = [{"context": "Paris is in France.", "question": "Where is Paris?", "response": "France"}]

    multihop = docs.MultiHop(max_hops=3)
    multihop.generate_query[1].predict.signature = multihop.generate_query[1].predict.signature.with_instructions(
        "Write the second hop's query.")

    router = docs.Router()
    router.experts["history"].predict.demos = [{"question": "Who built Rome?", "reasoning": "legend",
                                                "answer": "Romulus"}]
    question = [{"question": "Who wrote the first program?"}, {"question": "Why is the sky blue?"}]
    return [
        ("predict_string", qa, question, False),
        ("chain_of_thought_string", cot, question, False),
        ("predict_literal_class", emotion, [{"sentence": "I finally passed!"}], False),
        ("chain_of_thought_class", faithful, [{"context": "The sky is blue.", "text": "The sky is green."}], False),
        ("predict_typed_extraction", extract, [{"text": "Grace Hopper met Alan Turing."}], False),
        ("registered_pipeline", rag, question, True),
        ("registered_list_of_predictors", multihop, question[:1], True),
        ("registered_dict_of_predictors", router, [{"topic": "math", "question": "1/4?"},
                                                   {"topic": "history", "question": "Who founded Rome?"}], True),
    ]


@pytest.mark.filterwarnings("ignore:The 'prefix' argument:DeprecationWarning")  # DSPy's docs still pass it
def test_dspy_programs_round_trip_in_a_fresh_process_with_the_same_prompts_and_outputs(tmp_path, world):
    fake, docs = world
    jobs, expected = [], {}
    for name, program, inputs, registered in _docs_programs(docs):
        path = tmp_path / f"{name}.json"
        honed.save(program, path)
        jobs.append({"name": name, "path": str(path), "inputs": inputs, "registered": registered, "world": "answer"})
        expected[name] = _observed(fake, program, inputs)
        assert expected[name]["messages"], name
    sys.modules.pop("docs_programs")  # the child must not be helped by this process's state either

    got = _in_fresh_process(tmp_path, jobs)
    for name in expected:
        assert got[name]["fingerprint"] == expected[name]["fingerprint"], name
        assert got[name]["messages"] == expected[name]["messages"], name
        assert got[name]["outputs"] == expected[name]["outputs"], name

    # The saved state mattered: a fresh program sends other prompts, so the comparison can fail.
    fresh = _observed(fake, dspy.ChainOfThought("question -> answer"), _docs_programs(docs)[1][2])
    assert fresh["messages"] != expected["chain_of_thought_string"]["messages"]


def _field_facts(signature: type[dspy.Signature]) -> list:
    return [(name, info.annotation, info.json_schema_extra, info.metadata, info.description)
            for name, info in signature.fields.items()]


@pytest.mark.parametrize("make", [
    lambda: dspy.ChainOfThought("word -> plural"),
    lambda: dspy.ChainOfThought("question, context: list[str] -> answer: int"),
    lambda: dspy.ChainOfThought(dspy.Signature("text -> label: bool", "Is the text polite?")),
])
def test_chain_of_thought_loads_as_exactly_what_dspy_builds(tmp_path, make):
    """The `reasoning` field DSPy inserts (first output, desc `${reasoning}`, prefix `Reasoning:`) is stored
    and rebuilt as DSPy made it; nothing is added twice and nothing is lost."""
    honed.save(make(), tmp_path / "cot.json")
    stored = json.loads((tmp_path / "cot.json").read_text())
    assert stored["program"] == {"class": "dspy.predict.chain_of_thought:ChainOfThought", "init_args": {"config": {}}}
    fields = stored["predictors"]["predict"]["signature"]["fields"]
    reasoning = next(f for f in fields if f["name"] == "reasoning")
    assert reasoning == {"name": "reasoning", "role": "output", "type": "str", "desc": "${reasoning}",
                         "prefix": "Reasoning:"}
    loaded, built = honed.load(tmp_path / "cot.json"), make()
    assert type(loaded) is dspy.ChainOfThought and list(loaded.named_predictors())[0][0] == "predict"
    assert list(loaded.predict.signature.output_fields)[0] == "reasoning"
    assert _field_facts(loaded.predict.signature) == _field_facts(built.predict.signature)
    assert loaded.predict.signature.instructions == built.predict.signature.instructions
    assert loaded.predict.signature.__name__ == built.predict.signature.__name__
    assert loaded.predict.signature.equals(built.predict.signature)


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Inner(pydantic.BaseModel):
    """Nested."""

    score: Annotated[float, pydantic.Field(ge=0, le=1)]
    color: Color = Color.RED


class Outer(pydantic.BaseModel):
    title: str = pydantic.Field(description="the title", max_length=30)
    inner: Inner
    items: list[Inner] = []
    maybe: int | None = None
    table: dict[str, list[int]] = {}
    kind: Literal["a", "b"] = "a"


@pytest.mark.parametrize("annotation", [
    str, int, float, bool, list[str], set[int], tuple[int, str], tuple[str, ...], dict[str, list[str]],
    Literal["yes", "no"], Literal[1, 2, 3], int | None, list[Literal["x", "y"]], dspy.Image, dspy.History,
    Annotated[str, pydantic.StringConstraints(max_length=40)], Annotated[int, pydantic.Field(ge=0, lt=10)],
    Annotated[list[Annotated[str, pydantic.StringConstraints(max_length=5)]], pydantic.Field(min_length=2)],
    Outer, list[Outer], Outer | None,
])
def test_field_types_rebuild_from_json_to_the_same_type(annotation):
    signature = dspy.Signature({"x": (str, dspy.InputField()),
                                "y": (annotation, dspy.OutputField(desc="the y", max_length=3)
                                      if annotation is str else dspy.OutputField(desc="the y"))}, "Do it.")
    state = json.loads(json.dumps(signature_state(signature, "predictor `p`", None)))
    rebuilt = rebuild_signature(SignatureSpec.model_validate(state), "predictor `p`", None)
    original, again = signature.fields["y"], rebuilt.fields["y"]
    assert pydantic.TypeAdapter(again.annotation).json_schema() == pydantic.TypeAdapter(original.annotation
                                                                                       ).json_schema()
    assert again.json_schema_extra == original.json_schema_extra and again.metadata == original.metadata
    assert signature_state(rebuilt, "predictor `p`", None) == state  # describing it again gives the same JSON


def test_a_dspy_program_whose_types_need_code_is_refused_at_save_time(tmp_path):
    import datetime

    class Dated(pydantic.BaseModel):
        when: datetime.datetime  # JSON schema says `format: date-time`, which is not rebuilt

    for output, words in [(Dated, r"model `Dated` cannot be rebuilt exactly .*differ at /properties/when/format"),
                          (Annotated[str, pydantic.AfterValidator(str.strip)],
                           r"carries a `pydantic.functional_validators:AfterValidator` constraint, which is code")]:
        program = dspy.Predict(dspy.Signature({"text": (str, dspy.InputField()),
                                               "out": (output, dspy.OutputField())}, "Extract."))
        with pytest.raises(ArtifactError, match=r"refusing to write: predictor `self` field `out` cannot be rebuilt"
                           ) as info:
            honed.save(program, tmp_path / "p.json")
        assert re.search(words, str(info.value)) and "honed.register_program" in str(info.value)
        assert not (tmp_path / "p.json").exists()


class Unregistered(dspy.Module):
    def __init__(self):
        super().__init__()
        self.answer = dspy.ChainOfThought("question -> answer")


def test_a_user_module_still_needs_registering_and_the_error_says_how(tmp_path):
    honed.save(Unregistered(), tmp_path / "u.json")
    with pytest.raises(ArtifactError, match=r"unknown program class `test_artifact_dspy_modules:Unregistered`") as info:
        honed.load(tmp_path / "u.json")
    message = str(info.value)
    assert "honed.register_program(Unregistered)" in message and "@honed.register_program" in message
    assert "allow_classes=['test_artifact_dspy_modules:Unregistered']" in message and "--allow-class" in message
    assert str(tmp_path / "u.json") in message
    loaded = honed.load(tmp_path / "u.json", allow_classes=[Unregistered])
    assert list(loaded.answer.predict.signature.output_fields) == ["reasoning", "answer"]


def test_other_dspy_modules_say_what_artifacts_can_rebuild(tmp_path):
    program = dspy.ReAct("question -> answer", tools=[])
    with pytest.raises(ArtifactError, match=r"dspy.predict.react:ReAct cannot be saved on its own.*"
                                            r"dspy.predict.chain_of_thought:ChainOfThought.*register_program"):
        honed.save(program, tmp_path / "r.json")


def test_loading_a_dspy_program_runs_no_code_from_the_file(tmp_path, monkeypatch, world):
    """No pickle, eval, exec, compile or import while a typed ChainOfThought (a pydantic model inside) loads."""
    _, docs = world
    program = dspy.ChainOfThought(docs.ExtractPeople)
    honed.save(program, tmp_path / "p.json")
    data = json.loads((tmp_path / "p.json").read_text())
    assert "docs_programs" not in json.dumps(data["predictors"])  # types by JSON schema, not by import path
    honed.load(tmp_path / "p.json")  # warm: DSPy and pydantic import their own lazy modules on first use

    def forbidden(*args, **kwargs):
        raise AssertionError("code execution during load")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    monkeypatch.setattr(importlib, "import_module", forbidden)
    loaded = honed.load(tmp_path / "p.json")
    honed.artifact.verify(tmp_path / "p.json")
    monkeypatch.undo()
    (person,) = typing.get_args(loaded.predict.signature.output_fields["people"].annotation)
    assert person.__name__ == "Person" and person is not docs.Person  # rebuilt from its schema


class Pipeline(dspy.Module):
    def __init__(self):
        super().__init__()
        self.first = dspy.ChainOfThought("text -> summary")
        self.second = dspy.Predict("summary -> title")


def test_predictors_of_a_part_dspy_marked_compiled_are_saved_and_restored(tmp_path, monkeypatch):
    """DSPy's `named_predictors` skips a sub-module with `_compiled = True` (what its optimizers return);
    the artifact must still carry that part's prompts, or loading would silently reset them."""
    monkeypatch.setitem(honed.artifact._REGISTRY, honed.artifact.class_path(Pipeline), Pipeline)
    program = Pipeline()
    program.first.predict.signature = program.first.predict.signature.with_instructions("Summarize tersely.")
    program.first.predict.demos = [{"text": "a long text", "reasoning": "short", "summary": "text"}]
    program.first._compiled = True
    assert [name for name, _ in program.named_predictors()] == ["second"]
    artifact = honed.save(program, tmp_path / "p.json")
    assert list(artifact["predictors"]) == ["first.predict", "second"]
    loaded = honed.load(tmp_path / "p.json")
    assert loaded.first.predict.signature.instructions == "Summarize tersely."
    assert loaded.first.predict.demos[0].summary == "text"


def test_a_behavior_compiled_chain_of_thought_round_trips_in_a_fresh_process(tmp_path, world):
    """`dspy.ChainOfThought("word -> plural")` compiled by BehaviorOptimizer (a procedure, worked demos),
    saved, and loaded where only the file is: same prompts, same outputs, same procedure."""
    fake, _ = world
    words = ["cat", "dog", "cup", "pen", "map", "hat", "bed", "car", "bus", "key", "box", "egg", "fan", "jar",
             "kit", "log", "mug", "net", "owl", "pig", "rat", "sun", "toy", "van", "web", "yak"]
    data = [dspy.Example(id=w, word=w, plural=w + "s").with_inputs("word") for w in words]
    honed.configure(model=ScriptedLM(fake.plural_world), cache_dir=tmp_path / "cache", num_threads=1)
    optimizer = honed.BehaviorOptimizer(honed.ExactMatch("plural"), budget=60, refinement_steps=1, minibatch=4,
                                        max_demos=2, progress=False)
    compiled = optimizer.compile(dspy.ChainOfThought("word -> plural"), trainset=data[:12], valset=data[12:20],
                                 run_dir=tmp_path / "run")
    assert optimizer.result.budget_used <= 60 and optimizer.result.val_score == 1.0
    assert isinstance(compiled.predict, honed.Behave) and fake.ADD_S in compiled.predict.procedure.render()

    honed.save(compiled, tmp_path / "plural.json", provenance={"optimizer": "behavior"})
    stored = json.loads((tmp_path / "plural.json").read_text())["predictors"]["predict"]
    assert stored["procedure"] is not None
    assert [f["name"] for f in stored["signature"]["fields"]] == ["word", "reasoning", "plural"]  # task, no steps
    inputs = [{"word": w} for w in ("ant", "bee", "cow")]
    expected = _observed(fake, compiled, inputs, "plural_world")
    assert [row["plural"] for row in expected["outputs"]] == ["ants", "bees", "cows"]

    got = _in_fresh_process(tmp_path, [{"name": "plural", "path": str(tmp_path / "plural.json"), "inputs": inputs,
                                        "registered": False, "world": "plural_world"}])["plural"]
    assert got == expected
    assert got["fingerprint"]["predict"]["class"] == "Behave"


HOSTILE_VALUES = [None, 0, -1, 1.5, True, "", "str", "null", [], {}, [1], {"a": 1}, {"list": "str"}, {"literal": []},
                  {"model": {}}, {"python": "os:system"}, {"dspy": "Image"}, {"union": []}, {"$ref": "#/$defs/Nope"},
                  {"annotated": "str", "metadata": [{"constraint": {"max_length": -1}}]},
                  {"type": "object", "title": "X", "properties": {"model_config": {"type": "string"}}}]


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        found.extend(_paths(value, (*prefix, key)))
    return found


def test_mutated_dspy_module_artifacts_load_or_raise_artifact_error(tmp_path, world):
    """Rebuilding types from JSON is the new attack surface: any value replaced, deleted or wrapped, with the
    content hash recomputed (a writer that hashes what it writes), loads or raises ArtifactError, never
    another exception. Seeded, so a failure reproduces."""
    import copy
    import random

    _, docs = world
    honed.save(dspy.ChainOfThought(docs.ExtractPeople), tmp_path / "p.json")
    original = json.loads((tmp_path / "p.json").read_text())
    paths = [p for p in _paths(original) if p]
    rng, target = random.Random(20240601), tmp_path / "mutated.json"
    for _ in range(300):
        data = copy.deepcopy(original)
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice(paths)
            try:
                owner = data
                for part in parents:
                    owner = owner[part]
                how = rng.choice(["replace", "delete", "wrap"])
                if how == "delete":
                    del owner[last]
                else:
                    owner[last] = copy.deepcopy(rng.choice(HOSTILE_VALUES)) if how == "replace" else [owner[last]]
            except (KeyError, IndexError, TypeError):
                continue  # an earlier mutation removed this path
        data["content_hash"] = honed.artifact.content_hash(data)
        target.write_text(json.dumps(data))
        try:
            assert isinstance(honed.load(target), dspy.Module)
        except ArtifactError as error:
            assert error.path == str(target)


def test_a_behave_program_and_a_configured_predict_round_trip(tmp_path):
    behave = honed.Behave("sentence -> sentiment", honed.Procedure.from_texts(["Find opinion words.", "Decide."]),
                          temperature=0.3)
    behave.demos = [{"sentence": "Great.", "steps": ["great", "positive"], "sentiment": "positive"}]
    artifact = honed.save(behave, tmp_path / "b.json")
    assert artifact["program"]["init_args"] == {"config": {"temperature": 0.3}}  # not the derived max_tokens
    loaded = honed.load(tmp_path / "b.json")
    assert type(loaded) is honed.Behave and loaded.procedure == behave.procedure
    assert loaded.config == behave.config and loaded.signature.equals(behave.signature)
    assert [d.toDict() for d in loaded.demos] == behave.demos

    predict = dspy.Predict("question -> answer: float", temperature=0.7, n=1)
    honed.save(predict, tmp_path / "p.json")
    assert honed.load(tmp_path / "p.json").config == {"temperature": 0.7, "n": 1}
    data = json.loads((tmp_path / "p.json").read_text())
    data["program"]["init_args"] = {"signature": "import os"}
    data["content_hash"] = honed.artifact.content_hash(data)
    (tmp_path / "p.json").write_text(json.dumps(data))
    with pytest.raises(ArtifactError, match=r"takes init_args \{\"config\": \{...\}\} only"):
        honed.artifact.verify(tmp_path / "p.json")
