"""Can an optimizer model do what behavior optimization asks of it? Draft a procedure, then carry it out.

`BehaviorOptimizer`'s step 0 rests on the optimizer model twice: it drafts the procedure from the task's
instruction and three solved examples (`DraftProcedure`), and it carries the procedure out on training
examples told the correct answer (`reference_signature`): the worked demonstrations a weak teacher could not
write and the "should produce" of every step repair come from there. When the model drafts meta-steps
("Read the question carefully") and carries them out by copying each step's wording, the target is shown no
work to imitate, and no search over those candidates can find one. This probe measures that directly, per
task, for one optimizer model, with no target model and no search:

- the drafted procedure (from the task's first `--draft-examples` training examples, as a compile drafts);
- for each of the next `--examples` training examples, the reference execution: how many of its step outputs
  only restate their own instruction (`honed.optimizers.behavior.restates`, the rule the run records count
  as `echoed`), and whether a step output that does not restate its step contains the correct answer.

`--trace list` (the default) asks for the trace as behavior does, a list with one string per step;
`--trace keyed` as an object whose keys are the steps ("1. Count the objects": ...), the form behavior
revision 10 tried, to tell a model that cannot carry a procedure out from a trace form that invites copying.
`--draft-instructions TEXT` drafts under other instructions than `DraftProcedure`'s, to compare ways of asking.

    python benchmarks/drafting_probe.py                                   # the default tasks, 1.5B optimizer
    python benchmarks/drafting_probe.py --optimizer-model gguf/qwen2.5-coder-0.5b --tasks bbh/object_counting
    python benchmarks/drafting_probe.py --trace keyed --out-dir benchmarks/results/drafting_probe/keyed

A task is a bundled name (`first_word_letter`), `bbh/<name>` (BBH files under `--bbh-dir`), or
`jsonl:<name>` (`<name>.train.jsonl` and `.test.jsonl` under `--data-dir`, with the generic instruction a
user's own JSONL task gets). Writes `drafting_probe.json` and `drafting_probe.md` to `--out-dir` after every
task; every call goes through honed's cache, so a rerun is free.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy  # noqa: E402
from machine import describe_machine  # noqa: E402

import honed  # noqa: E402
from honed.modules import Procedure  # noqa: E402
from honed.optimizers.behavior import restates  # noqa: E402
from honed.programs import load_task  # noqa: E402
from honed.programs.metrics import normalize  # noqa: E402
from honed.programs.tasks import Task, task_from_files  # noqa: E402
from honed.signatures.behavior import (  # noqa: E402
    DraftProcedure,
    carry_out_signature,
    describe_answer,
    describe_inputs,
    trace_steps,
)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TASKS = ["first_word_letter", "singular_to_plural", "active_to_passive", "larger_animal",
                 "jsonl:negation", "jsonl:num_to_verbal", "jsonl:sum", "bbh/object_counting", "bbh/navigate"]


def resolve_task(spec: str, *, bbh_dir: Path, data_dir: Path) -> Task:
    if spec.startswith("jsonl:"):
        name = spec.split(":", 1)[1]
        return task_from_files(data_dir / f"{name}.train.jsonl", data_dir / f"{name}.test.jsonl")
    return load_task(spec, bbh_dir=bbh_dir)  # a bundled name or bbh/<name>


def contains_words(text: str, answer: str) -> bool:
    """Whether `answer` (normalized) occurs in `text` (normalized) as whole words: a one-letter answer is not
    found inside every word that has the letter."""
    return bool(answer) and re.search(rf"(?<!\w){re.escape(answer)}(?!\w)", normalize(text)) is not None


def carry_out(procedure: Procedure, task_input: str, gold: str, trace: str) -> list[str]:
    """One reference execution of `procedure` (trace "list" or "keyed"): each step's output, in order."""
    keyed = trace == "keyed"
    done = dspy.Predict(carry_out_signature(procedure, keyed))(procedure=procedure.render(), task_input=task_input,
                                                               correct_answer=gold)
    return trace_steps(done.steps, procedure, keyed)


def probe_task(task: Task, opt_lm: dspy.BaseLM, *, draft_examples: int = 3, examples: int = 3,
               trace: str = "list", draft_instructions: str | None = None) -> dict[str, Any]:
    """Draft a procedure for `task` with `opt_lm`, then carry it out on `examples` solved training examples.
    `draft_instructions`: the draft signature's instructions in place of `DraftProcedure`'s own."""
    draft = DraftProcedure.with_instructions(draft_instructions) if draft_instructions else DraftProcedure
    predictor = list(task.program().named_predictors())[-1][1]
    signature = getattr(predictor, "task_signature", predictor.signature)
    outputs = list(signature.output_fields)
    shown = task.train[:draft_examples]
    solved = "\n".join(f"- {describe_inputs(e)} -> {describe_answer({k: e[k] for k in outputs})}" for e in shown)
    with dspy.context(lm=opt_lm):
        drafted = dspy.Predict(draft)(task=signature.instructions, examples=solved)
        steps = [s.strip() for s in drafted.steps if s and s.strip()]
        procedure = Procedure.from_texts(steps)
        executions = []
        for example in task.train[draft_examples:draft_examples + examples]:
            given, gold = describe_inputs(example), describe_answer({k: example[k] for k in outputs})
            produced = carry_out(procedure, given, gold, trace)
            echoed = [restates(out, step.instruction) for out, step in zip(produced, procedure.steps, strict=False)]
            worked = [out for out, copied in zip(produced, echoed, strict=False) if not copied]
            answers = [normalize(str(example[k])) for k in outputs]
            executions.append({
                "input": given, "gold": gold, "steps": produced, "restated": sum(echoed),
                # a step that copies "answer 'No' if ..." out does not reach the answer "No"
                "reaches_answer": all(any(contains_words(out, a) for out in worked) for a in answers)})
    return {"instruction": signature.instructions, "procedure": steps, "executions": executions,
            "reference_steps": sum(len(e["steps"]) for e in executions),
            "restated_steps": sum(e["restated"] for e in executions),
            "reaching_answer": sum(e["reaches_answer"] for e in executions)}


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Drafting probe: `{result['optimizer_model']}`, trace written as a {result.get('trace', 'list')}", "",
             f"{result['machine']}. Per task: the procedure drafted from {result['draft_examples']} solved "
             f"examples, and its reference executions on the next {result['examples']} (told the correct answer): "
             "step outputs that only restate their own instruction, and executions whose steps contain the "
             "correct answer in a step output of its own.", "",
             f"Draft instructions: \"{result.get('draft_instructions') or DraftProcedure.instructions}\"", "",
             "| task | drafted procedure | reference step outputs restating their step "
             "| executions reaching the answer |",
             "|---|---|---|---|"]
    for name, row in result["tasks"].items():
        steps = " / ".join(s.replace("|", "\\|") for s in row["procedure"])
        lines.append(f"| {name} | {steps} | {row['restated_steps']} of {row['reference_steps']} | "
                     f"{row['reaching_answer']} of {len(row['executions'])} |")
    total = result["total"]
    lines += ["", f"Over every task: {total['restated_steps']} of {total['reference_steps']} reference step outputs "
                  f"restate their step; {total['reaching_answer']} of {total['executions']} executions reach the "
                  "correct answer."]
    return "\n".join(lines) + "\n"


def totals(tasks: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {"reference_steps": sum(t["reference_steps"] for t in tasks.values()),
            "restated_steps": sum(t["restated_steps"] for t in tasks.values()),
            "reaching_answer": sum(t["reaching_answer"] for t in tasks.values()),
            "executions": sum(len(t["executions"]) for t in tasks.values())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--optimizer-model", default="gguf/qwen2.5-coder-1.5b")
    parser.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated task specs (see above)")
    parser.add_argument("--draft-examples", type=int, default=3, help="solved examples the draft is shown (3)")
    parser.add_argument("--examples", type=int, default=3, help="reference executions per task (3)")
    parser.add_argument("--trace", choices=["list", "keyed"], default="list",
                        help="how the reference execution writes its steps (default list, as behavior does)")
    parser.add_argument("--draft-instructions", help="the draft's instructions in place of DraftProcedure's "
                        "(to compare ways of asking for a procedure; a compile always uses DraftProcedure's)")
    parser.add_argument("--bbh-dir", default=str(ROOT / "shared" / "data" / "bbh"))
    parser.add_argument("--data-dir", default=str(ROOT / "shared" / "data" / "instruction_induction"))
    parser.add_argument("--cache-dir", help="honed cache directory (default: honed's)")
    parser.add_argument("--out-dir", default=str(Path(__file__).parent / "results" / "drafting_probe"))
    args = parser.parse_args(argv)
    settings = honed.configure(optimizer_model=args.optimizer_model, cache_dir=args.cache_dir)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"benchmark": "drafting_probe", "optimizer_model": args.optimizer_model,
                              "machine": describe_machine(), "draft_examples": args.draft_examples,
                              "examples": args.examples, "trace": args.trace,
                              "draft_instructions": args.draft_instructions or DraftProcedure.instructions,
                              "tasks": {}}
    for spec in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        started = time.time()
        task = resolve_task(spec, bbh_dir=Path(args.bbh_dir), data_dir=Path(args.data_dir))
        row = probe_task(task, settings.optimizer_lm, draft_examples=args.draft_examples, examples=args.examples,
                         trace=args.trace, draft_instructions=args.draft_instructions)
        result["tasks"][spec] = {**row, "wall_s": round(time.time() - started, 1)}
        result["total"] = totals(result["tasks"])
        (out / "drafting_probe.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "drafting_probe.md").write_text(markdown(result))
        print(f"{spec}: {row['restated_steps']}/{row['reference_steps']} restated, "
              f"{row['reaching_answer']}/{len(row['executions'])} reach the answer", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
