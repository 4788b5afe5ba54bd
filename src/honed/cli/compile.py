"""`honed compile`: compile a task's program with an optimizer into an artifact.

The task, the models and the program are checked, and `--out` is checked writable, before the compile
spends any of its budget: a mistake found after an hour of model calls costs that hour.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from honed.adapter import check_program
from honed.artifact import program_hash, save
from honed.cli.options import (
    check_out,
    configure_from,
    executor_options,
    model_options,
    positive_int,
    task_from,
    task_options,
)
from honed.compiling import compile_task
from honed.errors import ConfigError
from honed.programs import check_task_fits
from honed.runs.result import BehaviorDetails, ReflectiveDetails

COMPILE_EPILOG = """examples:
  honed compile sentiment --optimizer reflective --budget 600 --seed 0 --out sentiment.json
  honed compile --train my.train.jsonl --test my.test.jsonl --optimizer reflective --out my.json --json
  honed compile sentiment --optimizer reflective --optimizer-model openai/gpt-4o-mini --out s.json
  honed compile first_word_letter --optimizer behavior --budget 600 --out fwl.json
  honed compile first_word_letter --optimizer behavior --no-demonstrations --out fwl-ablation.json

The compile writes a run directory (default: under the cache directory, named by what is compiled):
its ledger is the log and the resume point. Running the same command again resumes a killed compile,
or returns the finished one without model calls. Evaluate the result with
  honed eval sentiment --artifact sentiment.json
"""


def register(commands: Any) -> None:
    comp = commands.add_parser("compile", help="compile a task's program with an optimizer into an artifact",
                               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=COMPILE_EPILOG)
    task_options(comp)
    comp.add_argument("--optimizer", required=True,
                      help="reflective, behavior, or DSPy's labeled, bootstrap, copro, mipro, gepa, simba")
    comp.add_argument("--budget", type=positive_int, default=600, help="model calls the compile may make")
    comp.add_argument("--seed", type=int, default=0, help="seed for splits and sampling (default 0)")
    comp.add_argument("--out", required=True, help="artifact file to write (JSON)")
    comp.add_argument("--run-dir", help="run directory (ledger + resume point)")
    comp.add_argument("--train-size", type=positive_int, default=200, help="training examples (default 200)")
    comp.add_argument("--val-size", type=positive_int, default=50, help="validation examples (default 50)")
    comp.add_argument("--optimizer-model", help="litellm model string the optimizer reflects with")
    comp.add_argument("--no-demonstrations", action="store_true",
                      help="behavior optimizer only: no worked demonstrations (the paper's ablation)")
    comp.add_argument("--json", action="store_true", help="print one JSON object")
    model_options(comp)
    executor_options(comp)
    comp.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    task = task_from(args, parser)
    settings = configure_from(args)
    check_task_fits(task, settings.lm)  # a row too long for the model's context is refused before any call
    check_program(task.program())
    return cmd_compile(args, task, settings)


def cmd_compile(args: argparse.Namespace, task: Any, settings: Any) -> int:
    """Compile `task` under `settings` (already configured) and save the artifact; apart from `handle` so a
    caller can pass its own task and models."""
    check_out(args.out)
    options = {}
    if args.no_demonstrations:
        if args.optimizer != "behavior":
            raise ConfigError("--no-demonstrations applies to --optimizer behavior only")
        options["demonstrations"] = False
    outcome = compile_task(task, args.optimizer, budget=args.budget, seed=args.seed, run_dir=args.run_dir,
                           train_size=args.train_size, val_size=args.val_size, cache_dir=settings.cache_dir,
                           progress=False if args.json else None, **options)
    provenance = outcome.provenance()
    written = save(outcome.program, args.out, provenance=provenance)
    summary = {**provenance, "artifact": str(args.out), "program_hash": program_hash(written),
               "content_hash": written["content_hash"]}
    if args.json:
        print(json.dumps(summary, default=str))
        return 0
    result = outcome.result
    print(f"compiled {task.name} with {args.optimizer}: validation {result.baseline_val_score:.3f} -> "
          f"{result.val_score:.3f}")
    if outcome.val_size_note:
        print(f"  {outcome.val_size_note} (--val-size, --budget)")
    gain = result.gain_over_seed
    if gain:
        verdict = "returned" if gain.holds else "not returned: the seed was kept, as the gain may be chance"
        pairs = f" (validation and {gain.held_out} held-out training examples)" if gain.held_out else ""
        print(f"  best candidate: validation {gain.val_score:.3f}, won {gain.wins} and lost {gain.losses} "
              f"examples against the seed{pairs} (sign test p={gain.p_value:.3f}, needs <= {gain.significance:g}); "
              f"{verdict}")
    details, rate = result.details, result.verification_rate
    if isinstance(details, ReflectiveDetails):
        print(f"  reflections: {details.claims} claims, {details.claims_held} held when verified"
              + (f" (verification rate {rate:.0%})" if rate is not None else ""))
    if isinstance(details, BehaviorDetails):
        steps = ", ".join(f"{s['step']}: {s['best_val_score']:.3f}" for s in details.step_scores)
        print(f"  step edits: {details.edits}, {details.edits_held} held; best validation by step: {steps}")
        following = ", ".join(f"{k} {v:.0%}" for k, v in details.following.items())
        if following:
            print(f"  following rate per step: {following}")
    print(f"  budget {result.budget_used}/{result.budget} requests, {result.lm_calls} "
          f"model calls (the rest were cache hits), stopped: {result.stop_reason}")
    print(f"  artifact {args.out}; run dir {result.run_dir}")
    print(f"  next: honed eval {task.name} --artifact {args.out}   |   honed report {result.run_dir}")
    return 0
