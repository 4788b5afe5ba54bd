"""`honed diagnose`: ask any optimizer the two questions of Ma et al. (2024).

- `honed diagnose reflection TASK --optimizer NAME`: plant known causes of error into the task, compile
  each planted task, and check whether the optimizer's reflections name the cause.
- `honed diagnose following ARTIFACT_OR_RUN`: for each refinement a compile accepted, did it change what
  the target does on the examples it targeted?

Both write `<name>.json` and `<name>.html` into `--out`; `--json` prints the result as one JSON object.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from honed.cli.options import configure_from, executor_options, model_options, positive_int, task_from, task_options
from honed.config import default_cache_dir
from honed.diagnose import diagnose_following, diagnose_reflection
from honed.diagnose.reflection import parse_plants
from honed.optimizers.registry import check_optimizer
from honed.pages.diagnosis_page import write_diagnosis

DIAGNOSE_EPILOG = """examples:
  honed diagnose reflection sentiment --optimizer reflective --budget 300 --out diag/
  honed diagnose reflection sentiment --optimizer gepa --plants hidden_rule,distractor --judge-model openai/gpt-4o-mini
  honed diagnose reflection sentiment --optimizer reflective --budget 100 --repeats 8 --min-reflections 10
  honed diagnose following ~/.cache/honed/runs/sentiment-reflective-1a2b3c --json
  honed diagnose following sentiment.json --out diag/

reflection: each plant puts a known cause of error into the task's training data (hidden_rule: a trigger
word forces one label; format: gold outputs in UPPER CASE; distractor: random label noise, no cause) and
reports how many of the optimizer's reflections name it, with a 90% Wilson interval. --repeats N compiles
each plant N times (compile seeds seed..seed+N-1; the plant stays that of --seed) and pools the reflections.
following: reads a compile's ledger.
"""


def register(commands: Any) -> None:
    diag = commands.add_parser("diagnose", help="does an optimizer find planted causes; do its refinements work",
                               formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DIAGNOSE_EPILOG)
    which = diag.add_subparsers(dest="diagnosis", metavar="{reflection,following}")
    which.required = True

    refl = which.add_parser("reflection", help="plant causes of error and check the optimizer's reflections",
                            formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DIAGNOSE_EPILOG)
    task_options(refl)
    refl.add_argument("--optimizer", required=True,
                      help="reflective, behavior, or DSPy's labeled, bootstrap, copro, mipro, gepa, simba")
    refl.add_argument("--plants", default="hidden_rule,format,distractor",
                      help="comma-separated plants (default: hidden_rule,format,distractor)")
    refl.add_argument("--budget", type=positive_int, default=300, help="model calls per planted compile (default 300)")
    refl.add_argument("--seed", type=int, default=0, help="seed for plants, splits and sampling (default 0)")
    refl.add_argument("--repeats", type=positive_int, default=1,
                      help="compiles per plant, with compile seeds seed, seed+1, ...; their reflections are pooled "
                           "(default 1; with --min-reflections, the most to run)")
    refl.add_argument("--min-reflections", type=positive_int,
                      help="stop repeating a plant once it has this many reflections (at most --repeats compiles)")
    refl.add_argument("--train-size", type=positive_int, default=200, help="training examples (default 200)")
    refl.add_argument("--val-size", type=positive_int, default=50, help="validation examples (default 50)")
    refl.add_argument("--optimizer-model", help="litellm model string the optimizer reflects with")
    refl.add_argument("--judge-model", help="litellm model string that also judges each reflection (optional)")
    refl.add_argument("--out", help="folder for reflection.json, reflection.html and the run directories "
                                    "(default: <cache dir>/diagnoses/<task>-<optimizer>-s<seed>)")
    refl.add_argument("--json", action="store_true", help="print one JSON object")
    model_options(refl)
    executor_options(refl)

    follow = which.add_parser("following", help="did accepted refinements change what the target does",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=DIAGNOSE_EPILOG)
    follow.add_argument("source", help="run directory, its ledger.jsonl, or an artifact whose provenance names one")
    follow.add_argument("--out", help="folder for following.json and following.html (default: the run directory)")
    follow.add_argument("--json", action="store_true", help="print one JSON object")
    diag.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return cmd_diagnose(args, lambda: task_from(args, parser), lambda: configure_from(args))


def cmd_diagnose(args: argparse.Namespace, load_task: Callable[[], Any], configure: Callable[[], Any]) -> int:
    """Run `honed diagnose`; `load_task` and `configure` are called only by `reflection` (following needs no model)."""
    if args.diagnosis == "following":
        return _following(args)
    check_optimizer(args.optimizer)  # before loading data or a model
    parse_plants(args.plants)
    return _reflection(args, load_task(), configure())


def _reflection(args: argparse.Namespace, task: Any, settings: Any) -> int:
    cache_dir = getattr(settings, "cache_dir", None)
    out = Path(args.out) if args.out else Path(cache_dir or default_cache_dir()) / "diagnoses" / (
        f"{task.name.replace('/', '_')}-{args.optimizer}-s{args.seed}")
    result = diagnose_reflection(task, args.optimizer, plants=args.plants, budget=args.budget, seed=args.seed,
                                 train_size=args.train_size, val_size=args.val_size, judge_model=args.judge_model,
                                 out_dir=out, cache_dir=cache_dir, progress=False if args.json else None,
                                 repeats=args.repeats, min_reflections=args.min_reflections)
    json_path, html_path = write_diagnosis(result, out)
    if args.json:
        print(json.dumps({**result, "json_path": str(json_path), "html_path": str(html_path)}, default=str))
        return 0
    per = f"budget {args.budget} per compile, up to {args.repeats} per plant" if args.repeats > 1 else \
        f"budget {args.budget} per plant"
    print(f"diagnosed the reflections of {args.optimizer} on {task.name} ({per}):")
    for item in result["plants"]:
        _print_plant(item, args.min_reflections, (result.get("interval") or {}).get("confidence", 0.9))
    print(f"  wrote {json_path} and {html_path}")
    return 0


def _print_plant(item: dict[str, Any], min_reflections: int | None, confidence: float) -> None:
    """One plant's verdict: pooled count, rate and its interval; with repeats, each compile's count."""
    kind, count = item["plant"]["kind"], item["reflection_count"]
    if item["scored_against"] == "decoy":
        rate = _rate_with_interval(item["false_identification_rate"], item.get("false_identification_interval"),
                                   confidence)
        verdict = f"false identification {rate} ({item['naming']}/{count} name the " \
                  f"decoy {', '.join(item['keywords']) or '(none)'})"
    else:
        rate = _rate_with_interval(item["identification_rate"], item.get("identification_interval"), confidence)
        verdict = (f"{'identified' if item['identified'] else 'NOT identified'}: {item['naming']}/"
                   f"{count} reflections name it ({rate})")
    judge = item.get("judge")
    judged = f"; judge {judge['naming']}/{judge['verdicts']}" if judge else ""
    repeats = item.get("repeats") or 1
    over = f" over {repeats} compiles" if repeats > 1 else ""
    print(f"  {kind}: {verdict}{judged}; {item['calls']['lm_calls']} model calls{over}")
    if repeats > 1:
        print("    per compile: " + "; ".join(f"seed {r['seed']} {r['naming']}/{r['reflection_count']} "
                                          f"(val {r['val_score']})" for r in item["per_repeat"]))
    if min_reflections is not None and count < min_reflections:
        print(f"    only {count} reflections, fewer than --min-reflections {min_reflections}; raise --repeats")
    print(f"    planted: {item['plant']['description']}")


def _rate_with_interval(rate: float | None, interval: list[float] | None, confidence: float) -> str:
    """'25%, 90% interval 11%-47%': a rate from a few reflections is read with its uncertainty, never alone."""
    if interval is None:
        return _percent(rate)
    return f"{_percent(rate)}, {confidence:.0%} interval {_percent(interval[0])}-{_percent(interval[1])}"


def _following(args: argparse.Namespace) -> int:
    result = diagnose_following(args.source)
    json_path, html_path = write_diagnosis(result, Path(args.out) if args.out else Path(result["run_dir"]))
    if args.json:
        print(json.dumps({**result, "json_path": str(json_path), "html_path": str(html_path)}, default=str))
        return 0
    print(f"following in {result['run_dir']} ({result['optimizer']}):")
    if result.get("note"):
        print(f"  {result['note']}")
    if result.get("supported"):
        for label, key in (("accepted", "accepted"), ("all verified", "all")):
            t = result["totals"][key]
            print(f"  {label}: {t['refinements']} refinements; targeted {t['targeted']}: fixed {t['fixed']}, still "
                  f"wrong {t['still_wrong']}; passing re-run {t['checked_passing']}: still right {t['still_right']}, "
                  f"broken {t['broken']}; changed as intended {_percent(t['intended_rate'])}")
    print(f"  wrote {json_path} and {html_path}")
    return 0


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%}"
