"""`honed quickstart`: the main job in one command — compile a bundled task, then show what it bought.

The embedded target (SmolLM2-135M) is scored uncompiled on held-out examples, compiled by an optimizer
that reflects with the embedded optimizer model (Qwen2.5-Coder-1.5B, the `[optimizer]` extra), scored
again on the same examples, and saved as an artifact. Every call is cached, so a second run takes seconds.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from collections.abc import Callable
from typing import Any

from honed.artifact import save
from honed.cli.options import check_out, configure_from, model_options, positive_int
from honed.compiling import compile_task
from honed.evaluate import evaluate
from honed.programs import load_task

QUICKSTART_TASK = "first_word_letter"
QUICKSTART_OPTIMIZER = "behavior"
QUICKSTART_OPTIMIZER_MODEL = "gguf/qwen2.5-coder-1.5b"
QUICKSTART_BUDGET = 60
QUICKSTART_LIMIT = 50

EPILOG = """examples:
  honed quickstart
  honed quickstart --task singular_to_plural --optimizer reflective --budget 100
  honed quickstart --optimizer-model gguf/qwen2.5-coder-0.5b --limit 20

It prints the uncompiled and the compiled test score on the same examples, the model calls the compile
used, and the artifact it wrote (deploy it with `honed run FILE --input JSON`).
"""


def register(commands: Any) -> None:
    quick = commands.add_parser("quickstart", help="compile a bundled task on the embedded models and compare",
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    quick.add_argument("--task", default=QUICKSTART_TASK, help=f"bundled task (default {QUICKSTART_TASK})")
    quick.add_argument("--optimizer", default=QUICKSTART_OPTIMIZER,
                       help=f"any `honed compile` optimizer (default {QUICKSTART_OPTIMIZER})")
    quick.add_argument("--optimizer-model", default=QUICKSTART_OPTIMIZER_MODEL,
                       help=f"the model the optimizer reflects with (default {QUICKSTART_OPTIMIZER_MODEL})")
    quick.add_argument("--budget", type=positive_int, default=QUICKSTART_BUDGET,
                       help=f"model calls the compile may make (default {QUICKSTART_BUDGET})")
    quick.add_argument("--limit", type=positive_int, default=QUICKSTART_LIMIT,
                       help=f"test examples scored before and after (default {QUICKSTART_LIMIT})")
    quick.add_argument("--out", default="quickstart.json", help="artifact to write (default quickstart.json)")
    model_options(quick)
    quick.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return cmd_quickstart(args, lambda: configure_from(args))


def cmd_quickstart(args: argparse.Namespace, configure: Callable[[], Any]) -> int:
    """Run the quickstart; `configure` is called once the task has loaded, so a bad `--task` costs no model."""
    check_out(args.out)
    task = load_task(args.task)
    settings = configure()
    started = time.perf_counter()
    examples = task.test[: args.limit]
    print(f"honed quickstart: compile {task.name} for {settings.lm.model} with {args.optimizer}, "
          f"optimizer model {settings.optimizer_lm.model}")
    print(f"  instruction: {task.instructions}")
    print(f"\n1/3 the uncompiled program on {len(examples)} test examples")
    before = evaluate(task.program(), examples, task.metric)
    print(f"    score {before.score:.2f} ({before.lm_calls} model calls, {before.cache_hits} cache hits)")
    print(f"\n2/3 compiling with {args.optimizer} (budget {args.budget} model calls)")
    outcome = compile_task(task, args.optimizer, budget=args.budget, seed=0, train_size=100, val_size=20,
                           cache_dir=settings.cache_dir)
    result = outcome.result
    print(f"    validation {result.baseline_val_score:.2f} -> {result.val_score:.2f}; "
          f"{result.budget_used} of {args.budget} budgeted calls, {result.lm_calls} paid "
          f"(the rest were cache hits); stopped: {result.stop_reason}")
    print(f"\n3/3 the compiled program on the same {len(examples)} test examples")
    after = evaluate(outcome.program, examples, task.metric)
    save(outcome.program, args.out, provenance=outcome.provenance())
    print(f"    score {after.score:.2f} ({after.lm_calls} model calls, {after.cache_hits} cache hits)")
    print(f"\n  {task.name}: {before.score:.2f} uncompiled -> {after.score:.2f} compiled, "
          f"in {time.perf_counter() - started:.0f}s")
    print(f"  artifact {args.out}; run dir {result.run_dir}")
    print(f"  responses cached in {settings.cache_dir or 'memory'}: run it again and it makes no model calls.")
    sample = json.dumps({task.input_field: str(task.test[0][task.input_field])}, ensure_ascii=False)
    print(f"\n  next: honed run {shlex.quote(args.out)} --input {shlex.quote(sample)}")
    print(f"        honed report {result.run_dir} --out report.html")
    return 0
