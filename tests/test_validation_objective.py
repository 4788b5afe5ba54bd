"""What honed's optimizers rank by on validation: the mean balanced over a few answer forms, else the mean."""

from __future__ import annotations

import dspy

import honed
from honed.optimizers import read_ledger
from honed.optimizers.behavior import BehaviorOptimizer
from honed.optimizers.objective import ValidationObjective
from honed.testing import ScriptedLM


def labeled(labels: list[str], prefix: str = "e") -> list[dspy.Example]:
    return [dspy.Example(id=f"{prefix}{i}", sentence=f"film {prefix}{i}", sentiment=label).with_inputs("sentence")
            for i, label in enumerate(labels)]


def test_a_few_labels_are_balanced_so_the_majority_answer_scores_one_half():
    train = labeled(["positive", "negative"] * 10)
    val = labeled(["positive"] * 15 + ["negative"] * 5, "v")
    objective = ValidationObjective(train, val, balance=True)
    always_positive = [1.0] * 15 + [0.0] * 5
    assert objective.balanced and objective.name == "balanced"
    assert objective.score(always_positive) == 0.5
    assert objective.score([1.0] * 20) == 1.0
    assert objective.score([0.0] * 15 + [1.0] * 5) == 0.5
    # a prefix is scored over the forms it holds
    assert objective.score([1.0] * 4) == 1.0
    assert ValidationObjective(train, val, balance=False).score(always_positive) == 0.75


def test_free_text_and_many_valued_answers_keep_the_plain_mean():
    free = [dspy.Example(id=f"f{i}", word=f"w{i}", plural=f"w{i}s and more {i}").with_inputs("word")
            for i in range(30)]
    assert not ValidationObjective(free[:20], free[20:], balance=True).balanced
    letters = [dspy.Example(id=f"l{i}", word=f"{c}x", letter=c).with_inputs("word")
               for i, c in enumerate("abcdefghijklmnopqrstuvwxyz" * 3)]
    # a label set (26 letters over 78 examples), but 20 labels among the 20 validation examples
    objective = ValidationObjective(letters[:58], letters[58:], balance=True)
    assert not objective.balanced and objective.name == "mean"
    assert objective.score([1.0, 0.0, 0.0, 1.0]) == 0.5


def majority_world(messages, schema):
    """The uncompiled program answers "negative" to everything; any program with demonstrations or a
    procedure answers "positive" to everything: neither is right on more than one answer form."""
    props = schema["properties"]
    last = messages[-1]["content"]
    if list(props) == ["steps"] and "examples" in last:  # the drafted procedure
        return {"steps": ["Read the sentence.", "Answer."]}
    if list(props) == ["steps"]:  # a reference execution
        return {"steps": ["ok"] * props["steps"]["minItems"]}
    if "action" in props:
        return {"action": "rewrite", "new_step": "Answer with care.", "second_step": ""}
    plain = len(messages) == 2 and "steps" not in props
    label = "negative" if plain else "positive"
    if "steps" in props:
        return {"steps": ["ok"] * props["steps"]["minItems"], "sentiment": label}
    return {"sentiment": label}


def compile_skewed(cache_dir, run_dir, **options):
    honed.configure(model=ScriptedLM(majority_world), cache_dir=cache_dir, num_threads=1)
    optimizer = BehaviorOptimizer(honed.ExactMatch("sentiment"), budget=200, refinement_steps=1, minibatch=4,
                                  significance=0.5, progress=False, **options)
    program = honed.Classify(["positive", "negative"], input_field="sentence", output_field="sentiment",
                             instructions="Classify the sentiment.")
    train = labeled(["positive", "negative"] * 7)
    val = labeled(["positive"] * 6 + ["negative"] * 2, "v")  # a validation set that over-represents one answer
    optimizer.compile(program, trainset=train, valset=val, run_dir=run_dir)
    return optimizer.result, read_ledger(run_dir / "ledger.jsonl")


def test_answering_the_validation_majority_does_not_replace_the_seed(cache_dir, tmp_path):
    result, ledger = compile_skewed(cache_dir, tmp_path / "balanced")
    assert result.val_objective == "balanced"
    assert result.candidate["origin"] == "seed" and result.val_score == 0.5
    validations = [r for r in ledger if r["kind"] == "validate" and r["n"] == 8]
    assert validations and all(r["balanced"] == 0.5 for r in validations)
    assert {r["score"] for r in validations} == {0.25, 0.75}  # the plain mean is still recorded
    assert ledger[-1]["val_objective"] == "balanced"


def test_with_the_plain_mean_the_majority_answer_wins(cache_dir, tmp_path):
    result, _ = compile_skewed(cache_dir, tmp_path / "mean", balanced_validation=False)
    assert result.val_objective == "mean"
    assert result.candidate["origin"] != "seed" and result.val_score == 0.75
