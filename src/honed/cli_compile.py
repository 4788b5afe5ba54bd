"""`honed compile` and `honed report`: compile a task's program into an artifact, and render a run.

Kept apart from `honed.cli` (evaluation and running) so that each command module stays small.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from honed.artifact import program_hash, save
from honed.cli_options import model_options, positive_int, task_options
from honed.compiling import compile_task
from honed.errors import ConfigError
from honed.report import write_report

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


def add_parsers(commands: Any) -> None:
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

    rep = commands.add_parser("report", help="render a run directory or artifact as an HTML page",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  honed report ~/.cache/honed/runs/sentiment-reflective-1a2b3c "
                                     "--out r.html")
    rep.add_argument("source", help="run directory, ledger.jsonl, or artifact JSON")
    rep.add_argument("--out", help="HTML file to write (default: report.html in the run dir / beside the artifact)")


def check_out(out: str) -> None:
    """Refuse an `--out` that cannot be written *before* the compile spends its budget, not after."""
    target = Path(out).expanduser()
    if target.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the artifact's file name, e.g. {target / 'program.json'}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create its folder ({exc.strerror or exc}); choose another path"
                          ) from None
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"--out {out}: not writable; choose another path")


def cmd_compile(args: argparse.Namespace, task: Any, settings: Any) -> int:
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
    rate = summary.get("verification_rate")
    print(f"compiled {task.name} with {args.optimizer}: validation {summary['baseline_val_score']:.3f} -> "
          f"{summary['val_score']:.3f}")
    if summary.get("val_size_note"):
        print(f"  {summary['val_size_note']} (--val-size, --budget)")
    gain = summary.get("gain_over_seed")
    if gain:
        verdict = "returned" if gain["holds"] else "not returned: the seed was kept, as the gain may be chance"
        print(f"  best candidate: validation {gain['val_score']:.3f}, won {gain['wins']} and lost {gain['losses']} "
              f"examples against the seed (sign test p={gain['p_value']:.3f}, needs <= {gain['significance']:g}); "
              f"{verdict}")
    if "claims" in summary:
        print(f"  reflections: {summary['claims']} claims, {summary['claims_held']} held when verified"
              + (f" (verification rate {rate:.0%})" if rate is not None else ""))
    if "edits" in summary:
        steps = ", ".join(f"{s['step']}: {s['best_val_score']:.3f}" for s in summary.get("step_scores", []))
        print(f"  step edits: {summary['edits']}, {summary['edits_held']} held; best validation by step: {steps}")
        following = ", ".join(f"{k} {v:.0%}" for k, v in summary.get("following", {}).items())
        if following:
            print(f"  following rate per step: {following}")
    print(f"  budget {summary.get('budget_used')}/{summary.get('budget')} requests, {summary.get('lm_calls')} "
          f"model calls (the rest were cache hits), stopped: {summary.get('stop_reason')}")
    print(f"  artifact {args.out}; run dir {summary['run_dir']}")
    print(f"  next: honed eval {task.name} --artifact {args.out}   |   honed report {summary['run_dir']}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    path = write_report(args.source, args.out)
    print(str(path))
    return 0
