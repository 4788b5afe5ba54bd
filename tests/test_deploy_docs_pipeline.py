"""Issue 16's "done when": a program written the way DSPy's documentation writes one (a two-stage custom
`dspy.Module` of `dspy.ChainOfThought`s, registered as honed asks) compiles with `behavior` and with
`reflective` on the embedded SmolLM2-135M (target and optimizer model both), saves, and `honed run`, in a
new process that imports the user's module from PYTHONPATH, returns the outputs the compiled program
returned in process, recomputing them from a cache of its own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import dspy
import pytest
from dspy.adapters.utils import serialize_for_json

import honed
from honed.artifact import program_hash
from honed.models.resolve import resolve_gguf_path
from honed.testing import SchemaLM, ScriptedLM, fabricate

pytestmark = pytest.mark.usefixtures("restore_dspy_settings")

# As DSPy's docs write a program: a class signature with a description, a string signature, ChainOfThought
# for both stages, the second reading what the first wrote. Registered, as honed requires of user classes.
PIPELINE = textwrap.dedent('''
    import dspy

    import honed


    class Describe(dspy.Signature):
        """Say in a few words what the word names."""

        word: str = dspy.InputField()
        meaning: str = dspy.OutputField(desc="a few words")


    @honed.register_program
    class DescribeThenPluralize(dspy.Module):
        def __init__(self):
            super().__init__()
            self.describe = dspy.ChainOfThought(Describe)
            self.pluralize = dspy.ChainOfThought("word, meaning -> plural")

        def forward(self, word):
            meaning = self.describe(word=word).meaning
            return self.pluralize(word=word, meaning=meaning)
''')
CLASS = "docs_pipeline:DescribeThenPluralize"
WORDS = ["tree", "house", "cat"]
MAX_TOKENS = 64


@pytest.fixture
def pipeline(tmp_path):
    """The user's module as a file in its own folder, imported here as `docs_pipeline` (as a user's code is)."""
    folder = tmp_path / "user_code"
    folder.mkdir()
    (folder / "docs_pipeline.py").write_text(PIPELINE, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("docs_pipeline", folder / "docs_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["docs_pipeline"] = module
    spec.loader.exec_module(module)
    yield module, folder
    sys.modules.pop("docs_pipeline", None)
    honed.artifact._REGISTRY.pop(CLASS, None)


def _honed_command() -> list[str]:
    """The `honed` console script of this environment (what a user types), else `python -m honed.cli`."""
    script = Path(sys.executable).with_name("honed")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "honed.cli"]


def _honed_run(artifact: Path, inputs: Path, *, cwd: Path, pythonpath: Path | None, cache_dir: Path,
               threads: int | None = None) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "HONED_ARTIFACT_KEY")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    if threads is not None:  # the same llama.cpp threads as in process, so greedy decoding is bit for bit the same
        env["HONED_GGUF_THREADS"] = str(threads)
    return subprocess.run([*_honed_command(), "run", str(artifact), "--allow-class", CLASS, "--inputs", str(inputs),
                           "--model", "gguf/smollm2-135m", "--max-tokens", str(MAX_TOKENS),
                           "--cache-dir", str(cache_dir)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _as_json(prediction: dspy.Prediction) -> dict[str, Any]:
    return {name: serialize_for_json(value) for name, value in prediction.toDict().items()}


# ---------------------------------------------------------------------------------------------- unit (fakes)


def test_honed_run_names_pythonpath_when_the_users_module_cannot_be_imported(pipeline, tmp_path):
    """`honed run` is a console script: the folder it runs in is not on sys.path, so the user's module is found
    only through PYTHONPATH. Without it, one line says so (before any model is loaded)."""
    module, folder = pipeline
    honed.configure(model=SchemaLM(), cache=False)
    honed.save(module.DescribeThenPluralize(), tmp_path / "p.json")
    (tmp_path / "in.jsonl").write_text('{"word": "tree"}\n', encoding="utf-8")
    child = _honed_run(tmp_path / "p.json", tmp_path / "in.jsonl", cwd=folder, pythonpath=None,
                       cache_dir=tmp_path / "c")
    assert child.returncode == 1 and child.stdout == ""
    assert ("cannot import module `docs_pipeline` for class `docs_pipeline:DescribeThenPluralize`: No module named "
            "'docs_pipeline'; put the folder that holds `docs_pipeline.py` (or the `docs_pipeline` package) on "
            "PYTHONPATH, e.g. `PYTHONPATH=. honed run ...`") in child.stderr


def test_behavior_compiles_a_pipeline_whose_answer_reads_the_first_stage(pipeline, tmp_path):
    """The answer stage reads `meaning`, which only the first stage writes: the teacher runs the whole
    pipeline, and worked demonstrations show the answer stage's inputs as the first stage produced them."""
    module, _ = pipeline
    words = ["cat", "dog", "tree", "car", "book", "pen", "cup", "hat", "bag", "map", "key", "cap"]

    def target(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> dict[str, Any]:
        """The target writes the right plural only when it follows a procedure (its schema has steps)."""
        answer = fabricate(schema)
        if "plural" in answer:
            last = messages[-1]["content"]
            word = max(words, key=lambda w: last.rfind(w))
            answer["plural"] = word + "s" if "steps" in answer else word
        return answer

    honed.configure(model=ScriptedLM(target, cache=False), cache=False)
    examples = [dspy.Example(word=w, plural=w + "s", id=str(i)).with_inputs("word") for i, w in enumerate(words)]
    optimizer = honed.BehaviorOptimizer(honed.ExactMatch("plural"), optimizer_model=SchemaLM(cache=False),
                                        budget=80, refinement_steps=1, max_demos=1, minibatch=2,
                                        significance=1.0, progress=False)
    compiled = optimizer.compile(module.DescribeThenPluralize(), trainset=examples[:8], valset=examples[8:],
                                 run_dir=tmp_path / "run")
    assert optimizer.result.baseline_val_score == 0.0 and optimizer.result.val_score == 1.0
    behave = compiled.pluralize.predict
    assert isinstance(behave, honed.Behave) and isinstance(compiled.describe.predict, dspy.Predict)
    # the worked demonstration carries the first stage's `meaning` (SchemaLM's "x"), not a KeyError
    assert behave.demos and all(demo["meaning"] == "x" and demo["steps"] for demo in behave.demos)
    assert compiled(word="pen").plural == "pens"


# ---------------------------------------------------------------------------------------------- embedded model


def _plural_teacher(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> dict[str, Any]:
    """A scripted optimizer model that drafts a pluralizing procedure and carries it out right. Why scripted:
    SmolLM2 drafting for itself writes steps like "task", "example", so whether its compile beats the seed
    on three validation examples was luck, and this test is about what a compiled pipeline carries."""
    answer = fabricate(schema)
    last = messages[-1]["content"]
    word = (re.findall(r"word: (\w+)", last) or ["x"])[-1]
    if list(answer) == ["steps"] and "correct_answer" not in last:  # the draft
        return {"steps": ["Find the word.", "Add an s to the end of the word."]}
    if "steps" in answer:  # a reference execution, or the answer stage worked as a teacher
        answer["steps"] = [word, word + "s"]
    if "plural" in answer:
        answer["plural"] = word + "s"
    return answer


def _optimizer(name: str, metric: Any) -> Any:
    """Tiny settings: a handful of examples, one round, budget 40 (about 20 s of SmolLM2 on one free core)."""
    if name == "behavior":
        return honed.BehaviorOptimizer(metric, optimizer_model=ScriptedLM(_plural_teacher), budget=40,
                                       refinement_steps=1, max_demos=1, minibatch=2, edits_per_step=1,
                                       draft_examples=2, beam=2, verify_passing=1, significance=1.0,
                                       progress=False)
    return honed.ReflectiveRefine(metric, budget=40, minibatch=3, claims_per_round=1, errors_per_claim=2,
                                  verify_passing=1, max_demos=2, max_rounds=1, beam=2, significance=1.0,
                                  progress=False)


@pytest.mark.model
@pytest.mark.parametrize("optimizer", ["reflective", "behavior"])
def test_a_docs_pipeline_compiles_saves_and_honed_run_serves_it_in_a_new_process(optimizer, pipeline, tmp_path):
    module, folder = pipeline
    honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "cache", max_tokens=MAX_TOKENS)
    task = honed.load_task("singular_to_plural")
    seed = module.DescribeThenPluralize()
    compiled = _optimizer(optimizer, task.metric).compile(seed, trainset=task.train[:6], valset=task.train[6:9],
                                                          run_dir=tmp_path / "run")
    artifact = tmp_path / f"{optimizer}.json"
    saved = honed.save(compiled, artifact, provenance={"optimizer": optimizer})
    assert saved["program"]["class"] == CLASS
    # the compile left its mark (demos, instructions or a procedure), so the round trip carries compiled state
    assert program_hash(saved) != program_hash(honed.save(module.DescribeThenPluralize(), tmp_path / "seed.json")), (
        f"{optimizer} returned the seed program; the round trip below would carry no compiled state")
    expected = [_as_json(compiled(word=word)) for word in WORDS]
    assert all(output.get("plural") for output in expected)
    # and the compiled state shows in the outputs: a loader that dropped it would not pass the comparison below
    assert [_as_json(seed(word=word)) for word in WORDS] != expected

    inputs = tmp_path / "words.jsonl"
    inputs.write_text("".join(json.dumps({"word": word}) + "\n" for word in WORDS), encoding="utf-8")
    llama = honed.register_gguf_provider().loaded(resolve_gguf_path("gguf/smollm2-135m")).llama
    elsewhere = tmp_path / "elsewhere"  # not the module's folder: only PYTHONPATH makes it importable
    elsewhere.mkdir()
    # a cache of its own: the new process cannot read the compile's answers, it computes them again
    child = _honed_run(artifact, inputs, cwd=elsewhere, pythonpath=folder, cache_dir=tmp_path / "fresh-cache",
                       threads=llama.n_threads)
    assert child.returncode == 0, child.stderr[-3000:]
    served = [json.loads(line) for line in child.stdout.splitlines() if line.strip()]
    assert served == expected
