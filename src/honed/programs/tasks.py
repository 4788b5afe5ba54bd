"""Tasks: data splits, declared fields, a seed instruction, a metric, and the program that fits them.

Bundled tasks are the instruction-induction tasks shipped in `honed/programs/data/`. Users bring
their own as `--train FILE.jsonl --test FILE.jsonl`, and BIG-Bench Hard files load as `bbh/<name>`.
Every loader types the output field from the training answers (`honed.programs.output_types`), and the
Task records that type, so the program built from it decodes only answers of that type and length. Given the
target `model=`, a loader also refuses rows whose input cannot fit that model's context, naming file and line,
before any model work (`honed.programs.context_fit`; `check_task_fits` does the same for a loaded task).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import dspy

from honed.errors import ConfigError
from honed.programs.classify import Classify
from honed.programs.context_fit import check_task_fits
from honed.programs.loaders import read_bbh, read_jsonl, to_examples
from honed.programs.metrics import ExactMatch
from honed.programs.output_types import OutputType, infer_output_type
from honed.programs.pipeline import ReasonThenAnswer
from honed.programs.transform import Transform
from honed.splits import seeded_split, share

ProgramKind = Literal["classify", "transform", "pipeline"]


@dataclass(frozen=True)
class TaskSpec:
    """How a bundled task names its fields and what the uncompiled program is told to do."""

    input_field: str
    output_field: str
    instructions: str


INSTRUCTION_INDUCTION: dict[str, TaskSpec] = {
    "active_to_passive": TaskSpec("sentence", "passive", "Rewrite the sentence in the passive voice."),
    "antonyms": TaskSpec("word", "antonym", "Write the antonym of the word."),
    "diff": TaskSpec("numbers", "difference", "Subtract the second number from the first."),
    "first_word_letter": TaskSpec("word", "letter", "Write the first letter of the word."),
    "informal_to_formal": TaskSpec("sentence", "formal", "Rewrite the sentence in a formal style."),
    "larger_animal": TaskSpec("animals", "larger", "Name the larger of the two animals."),
    "letters_list": TaskSpec("word", "letters", "Spell the word with a space between the letters."),
    "negation": TaskSpec("sentence", "negated", "Negate the sentence."),
    "num_to_verbal": TaskSpec("number", "words", "Write the number in words."),
    "orthography_starts_with": TaskSpec(
        "sentence", "words", "List the words of the sentence that start with the letter in brackets."),
    "rhymes": TaskSpec("word", "rhyme", "Write a word that rhymes with the word."),
    "sentiment": TaskSpec("sentence", "sentiment", "Classify the sentiment of the sentence as positive or negative."),
    "singular_to_plural": TaskSpec("word", "plural", "Write the plural form of the word."),
    "sum": TaskSpec("numbers", "total", "Add the two numbers."),
    "taxonomy_animal": TaskSpec("words", "animals", "List the animals among the words."),
    "translation_en-de": TaskSpec("word", "german", "Translate the English word into German."),
    "translation_en-es": TaskSpec("word", "spanish", "Translate the English word into Spanish."),
    "word_in_context": TaskSpec(
        "sentences", "meaning", "Decide whether the word has the same meaning in both sentences."),
}


def _train_answers(examples: list[dspy.Example], output_field: str) -> tuple[list[str], list[str]]:
    """The training outputs (one per example) and every alternative answer, as text."""
    outputs = [str(e[output_field]) for e in examples]
    answers = [str(a) for e in examples for a in (e.get("answers") or [])]
    return outputs, answers


@dataclass
class Task:
    """Everything needed to evaluate or compile a program on one task.

    `output_type` is the type of the output field (see `honed.programs.output_types`); left None, it is
    inferred from `train` (a `classify` task keeps its `labels`), so a Task rebuilt with other gold
    outputs (`dataclasses.replace(task, train=..., output_type=None)`) is typed after them.
    """

    name: str
    train: list[dspy.Example]
    test: list[dspy.Example]
    input_field: str
    output_field: str
    instructions: str
    kind: ProgramKind
    labels: list[str] | None = None
    two_stage: bool = False  # reason -> answer (`ReasonThenAnswer`) instead of one predictor
    metric: Callable = field(default=None)  # type: ignore[assignment]
    output_type: OutputType | None = None

    def __post_init__(self) -> None:
        if self.metric is None:
            self.metric = ExactMatch(self.output_field)
        if self.output_type is None:
            outputs, answers = _train_answers(self.train, self.output_field)
            inferred = infer_output_type(outputs, answers, labels=False)
            if self.kind == "classify" and self.labels:
                inferred = OutputType("label", inferred.max_chars, tuple(self.labels))
            self.output_type = inferred

    def _typed_output(self) -> dict[str, Any]:
        """`output_type`/`max_chars` for a program that does not classify (a label set becomes bounded text)."""
        assert self.output_type is not None  # set in __post_init__
        answer = self.output_type.as_text()
        return {"output_type": answer.type_name, "max_chars": answer.max_chars if answer.kind == "text" else None}

    def program(self) -> dspy.Module:
        """A fresh, uncompiled program for this task."""
        if self.kind == "classify":
            if self.two_stage:
                return ReasonThenAnswer(input_field=self.input_field, output_field=self.output_field,
                                        labels=self.labels, instructions=self.instructions)
            return Classify(self.labels or [], input_field=self.input_field, output_field=self.output_field,
                            instructions=self.instructions)
        maker = ReasonThenAnswer if self.two_stage else Transform
        return maker(input_field=self.input_field, output_field=self.output_field, instructions=self.instructions,
                     **self._typed_output())


def bundled_task_names() -> list[str]:
    return sorted(INSTRUCTION_INDUCTION)


def _data_dir() -> Path:
    return Path(str(resources.files("honed.programs") / "data" / "instruction_induction"))


def _labels_or_fail(outputs: list[str], where: str) -> list[str]:
    labels = sorted(set(outputs))
    if len(labels) < 2:
        raise ConfigError(f"{where}: a classification program needs at least two distinct training outputs")
    return labels


def _build(name: str, train_rows: list[dict], test_rows: list[dict], spec: TaskSpec,
           program: ProgramKind | None) -> Task:
    outputs = [r["output"] for r in train_rows]
    answers = [a for r in train_rows for a in r.get("answers") or []]
    output_type = infer_output_type(outputs, answers, labels=program != "transform")
    kind: ProgramKind = "classify" if output_type.kind == "label" else "transform"
    labels = list(output_type.labels) or None
    if program == "classify":
        kind, labels = "classify", _labels_or_fail(outputs, name)
        output_type = OutputType("label", output_type.max_chars, tuple(labels))
    instructions = spec.instructions
    if kind == "classify" and not instructions:
        instructions = f"Classify the {spec.input_field} as one of: {', '.join(labels or [])}."
    elif not instructions:
        instructions = f"Given the {spec.input_field}, write the {spec.output_field}."
    return Task(
        name=name,
        train=to_examples(train_rows, input_field=spec.input_field, output_field=spec.output_field),
        test=to_examples(test_rows, input_field=spec.input_field, output_field=spec.output_field),
        input_field=spec.input_field, output_field=spec.output_field, instructions=instructions,
        kind=kind, labels=labels, two_stage=program == "pipeline", output_type=output_type,
    )


def _fitted(task: Task, model: Any) -> Task:
    if model is not None:
        check_task_fits(task, model)
    return task


def load_task(name: str, *, program: ProgramKind | None = None, bbh_dir: str | Path | None = None,
              model: Any = None) -> Task:
    """A bundled task by name (`sentiment`, ...) or a BIG-Bench Hard task (`bbh/navigate`).

    `model`: the target (`dspy.LM` or litellm string); rows whose input cannot fit its context raise
    `DatasetError` naming file and line (`check_task_fits`)."""
    if name.startswith("bbh/"):
        return load_bbh_task(name[4:], bbh_dir=bbh_dir, program=program, model=model)
    if name not in INSTRUCTION_INDUCTION:
        raise ConfigError(f"unknown task {name!r}; bundled tasks: {', '.join(bundled_task_names())}, "
                          "bbh/<name>, or --train FILE.jsonl --test FILE.jsonl")
    directory = _data_dir()
    return _fitted(_build(name, read_jsonl(directory / f"{name}.train.jsonl"),
                          read_jsonl(directory / f"{name}.test.jsonl"), INSTRUCTION_INDUCTION[name], program), model)


def task_from_files(train: str | Path, test: str | Path, *, program: ProgramKind | None = None,
                    instructions: str = "", model: Any = None) -> Task:
    """A task from two JSONL files with `input`, `output` and optional `answers` fields.

    `model`: the target (`dspy.LM` or litellm string); a row whose input cannot fit its context raises
    `DatasetError` naming the file, line and field, before any model call (`check_task_fits`)."""
    spec = TaskSpec("input", "output", instructions)
    return _fitted(_build(Path(train).stem.removesuffix(".train"), read_jsonl(train), read_jsonl(test), spec,
                          program), model)


def load_bbh_task(name: str, *, bbh_dir: str | Path | None = None, program: ProgramKind | None = None,
                  train_fraction: float = 0.3, seed: int = 0, model: Any = None) -> Task:
    """A BIG-Bench Hard task from `<bbh_dir>/<name>.json` (default `$HONED_BBH_DIR`), split by seed."""
    directory = bbh_dir or os.environ.get("HONED_BBH_DIR")
    if not directory:
        raise ConfigError("BBH tasks are not bundled: pass bbh_dir= or set HONED_BBH_DIR to the folder of BBH files")
    rows = read_bbh(Path(directory) / f"{name}.json")
    train_rows, test_rows = seeded_split(rows, share(len(rows), train_fraction), seed=seed)
    spec = TaskSpec("question", "answer", "Answer the question.")
    return _fitted(_build(f"bbh/{name}", train_rows, test_rows, spec, program), model)
