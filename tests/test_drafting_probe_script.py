"""benchmarks/drafting_probe.py: what an optimizer model drafts and how it carries the draft out, counted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import honed
from honed.testing import ScriptedLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import drafting_probe  # noqa: E402

META = ["Read the word carefully.", "Write down the answer."]
WORK = ["Take the first letter of the word.", "Write that letter."]


def optimizer(steps: list[str], restate: bool, name: str = "optimizer"):
    """Drafts `steps`; carries them out by copying each step's wording (`restate`) or by doing the work."""
    def answer(messages, schema):
        last = messages[-1]["content"]
        if "correct_answer" in last:
            word = last.split("task_input: word: ")[1].split("\n")[0].strip()
            return {"steps": list(steps) if restate else [word[0], word[0]]}
        return {"steps": steps}
    return ScriptedLM(answer, model=f"scripted/{name}")


def test_meta_steps_carried_out_by_restating_them_are_counted(cache_dir):
    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    row = drafting_probe.probe_task(task, optimizer(META, restate=True), examples=2)
    assert row["procedure"] == META and len(row["executions"]) == 2
    assert (row["restated_steps"], row["reference_steps"], row["reaching_answer"]) == (4, 4, 0)


def test_steps_that_do_the_work_reach_the_answer_and_restate_nothing(cache_dir):
    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    row = drafting_probe.probe_task(task, optimizer(WORK, restate=False), examples=3)
    assert (row["restated_steps"], row["reference_steps"], row["reaching_answer"]) == (0, 6, 3)
    assert row["executions"][0]["gold"] == f"letter: {task.train[3]['letter']}"


def test_the_tables_count_every_task(cache_dir):
    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    tasks = {"a": drafting_probe.probe_task(task, optimizer(META, restate=True), examples=1),
             "b": drafting_probe.probe_task(task, optimizer(WORK, restate=False, name="worker"), examples=1)}
    result = {"optimizer_model": "scripted/optimizer", "machine": "m", "draft_examples": 3, "examples": 1,
              "tasks": tasks, "total": drafting_probe.totals(tasks)}
    assert result["total"] == {"reference_steps": 4, "restated_steps": 2, "reaching_answer": 1, "executions": 2}
    table = drafting_probe.markdown(result)
    assert "| a | Read the word carefully. / Write down the answer. | 2 of 2 | 0 of 1 |" in table
    assert "2 of 4 reference step outputs restate their step; 1 of 2 executions" in table
    json.dumps(result)  # the file it writes


def test_a_copied_step_that_names_the_answer_does_not_reach_it(cache_dir):
    """navigate's drafted "If you do not return to the starting point, answer 'No'", copied out, holds the word
    "No"; only a step output of the model's own counts."""
    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    gold = task.train[3]["letter"]
    steps = ["Read the word carefully.", f"Write down the letter {gold} if it comes first."]
    row = drafting_probe.probe_task(task, optimizer(steps, restate=True, name="copier"), examples=1)
    assert (row["restated_steps"], row["reaching_answer"]) == (2, 0)
    assert drafting_probe.contains_words(steps[1], gold) and not drafting_probe.contains_words("Read it.", "x")


def test_a_keyed_trace_is_asked_for_under_the_steps_and_read_back_in_order(cache_dir):
    seen = []

    def answer(messages, schema):
        if "correct_answer" in messages[-1]["content"]:
            steps = schema["properties"]["steps"]
            steps = schema["$defs"][steps["$ref"].rsplit("/", 1)[1]] if "$ref" in steps else steps
            keys = list(steps["properties"])
            seen.append(keys)
            word = messages[-1]["content"].split("task_input: word: ")[1].split("\n")[0].strip()
            return {"steps": {keys[0]: word, keys[1]: word[0]}}
        return {"steps": WORK}

    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    row = drafting_probe.probe_task(task, ScriptedLM(answer, model="scripted/keyed"), examples=2, trace="keyed")
    assert seen[0] == ["1. Take the first letter of the word.", "2. Write that letter."]
    first = task.train[3]["word"]
    assert row["executions"][0]["steps"] == [first, first[0]]
    assert (row["restated_steps"], row["reference_steps"], row["reaching_answer"]) == (0, 4, 2)


def test_other_draft_instructions_are_what_the_optimizer_model_is_asked(cache_dir):
    """`--draft-instructions` replaces DraftProcedure's instructions in the draft request, and only there."""
    systems = []

    def answer(messages, schema):
        if "correct_answer" not in messages[-1]["content"]:
            systems.append(messages[0]["content"])
        return {"steps": WORK} if "correct_answer" not in messages[-1]["content"] else {"steps": ["w", "w"]}

    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("first_word_letter")
    lm = ScriptedLM(answer, model="scripted/asked")
    drafting_probe.probe_task(task, lm, examples=1, draft_instructions="Write concrete operations only.")
    drafting_probe.probe_task(task, lm, examples=1)
    assert "Write concrete operations only." in systems[0] and "Write concrete operations only." not in systems[1]
    assert "Write a short step-by-step procedure" in systems[1]
