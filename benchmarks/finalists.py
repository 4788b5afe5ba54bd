"""Did the optimizer return its best program? Every finalist of a compile, scored on test.

A compile ranks its candidates on a small validation set (20 examples in the paper's setting), so a loss on
test has two possible causes: the search never produced a better program, or it produced one and the
ranking passed it over. This script tells them apart. For each task and honed optimizer it compiles exactly
as `compare.py` does (a warm cache and the run directory make that free), rebuilds from the run record every
candidate that reached full validation (`Candidate.from_json`), and scores each on the test file, outside
the budget. Per compile it reports the program returned, the finalist best on test, and the regret (best
finalist's test score minus the returned one's); over compiles, how often the returned program was the best.

    python benchmarks/finalists.py --optimizer-model gguf/qwen2.5-coder-1.5b --seed 1 --out runs/finalists_seed1

Writes `finalists.json` and `finalists.md` to `--out` after every compile; a rerun skips compiles already
written there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import TASKS, _csv, _tasks, _test_set, add_setting_arguments  # noqa: E402

import honed  # noqa: E402
from honed.compiling import affordable_val_size, compile_task  # noqa: E402
from honed.evaluate import evaluate  # noqa: E402
from honed.optimizers.candidates import Candidate, build, example_id  # noqa: E402
from honed.programs import Task  # noqa: E402
from honed.runs import Run  # noqa: E402
from honed.runs.records import HeldOut, Validate  # noqa: E402

HONED_OPTIMIZERS = ["reflective", "behavior"]  # the ones whose run records hold their candidates


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=lambda t: _csv(t, honed.programs.bundled_task_names(), "task"),
                        default=TASKS, help=f"comma-separated bundled tasks (default: {','.join(TASKS)})")
    parser.add_argument("--train", help="training JSONL of your own task (with --test; replaces --tasks)")
    parser.add_argument("--test", help="test JSONL of your own task")
    parser.add_argument("--optimizers", type=lambda t: _csv(t, HONED_OPTIMIZERS, "optimizer"),
                        default=HONED_OPTIMIZERS, help="comma-separated (default: reflective,behavior)")
    add_setting_arguments(parser)
    parser.add_argument("--optimizer-model", help="the model optimizers reflect, propose and teach with")
    parser.add_argument("--cache-dir", help="honed cache directory (default: honed's)")
    parser.add_argument("--out", required=True, help="results folder")
    args = parser.parse_args(argv)
    if bool(args.train) != bool(args.test):
        parser.error("--train and --test go together")
    return args


def finalists(run: Run, val_n: int) -> dict[str, dict[str, Any]]:
    """Every candidate the run validated on all `val_n` examples: its record, scores and held-out score."""
    recorded: dict[str, Candidate] = {}
    for record in run.records:
        data = getattr(record, "candidate", None)
        if data is not None and not isinstance(data, str):
            candidate = Candidate.from_json(data.model_dump())
            recorded.setdefault(candidate.id, candidate)
    held = {h.candidate: h.score for h in run.of(HeldOut)}
    found: dict[str, dict[str, Any]] = {}
    for validate in run.of(Validate):
        if validate.n == val_n and validate.candidate in recorded:
            found[validate.candidate] = {"candidate": recorded[validate.candidate], "val": validate.score,
                                         "balanced": validate.balanced, "held_out": held.get(validate.candidate)}
    return found


def compile_row(task: Task, optimizer: str, args: argparse.Namespace) -> dict[str, Any]:
    """One compile's finalists on test. Raises if the program rebuilt from the record as the one returned
    scores differently from the program the compile returned: then the record does not describe it."""
    started = time.perf_counter()
    outcome = compile_task(task, optimizer, budget=args.budget, seed=args.seed, train_size=args.train_size,
                           val_size=args.val_size, cache_dir=args.cache_dir, progress=False)
    run = Run.open(outcome.summary["run_dir"])
    val_n = affordable_val_size(args.val_size, args.budget, len(task.program().named_predictors()))
    by_id = {example_id(e, i): e for i, e in enumerate(task.train)}
    test = _test_set(task, args.limit)
    returned = run.final.candidate.id if run.final and run.final.candidate else None
    rows = []
    for cid, found in finalists(run, val_n).items():
        candidate = found.pop("candidate")
        report = evaluate(build(task.program(), candidate, by_id), test, task.metric, progress=False)
        states = candidate.predictors.values()
        rows.append({"id": cid, "origin": candidate.origin, **found, "test": round(report.score, 4),
                     "demos": sum(len(s.demo_ids) + len(s.worked_demos) for s in states),
                     "procedure": any(s.procedure is not None for s in states), "returned": cid == returned})
    best = max((r["test"] for r in rows), default=None)
    chosen = next((r for r in rows if r["returned"]), None)
    if chosen is not None:
        actual = round(evaluate(outcome.program, test, task.metric, progress=False).score, 4)
        if actual != chosen["test"]:
            raise RuntimeError(f"{task.name}/{optimizer}: the returned program scores {actual} on test but its "
                               f"record {returned} rebuilds as a program scoring {chosen['test']}")
    return {"task": task.name, "optimizer": optimizer, "seed": args.seed, "returned": returned,
            "returned_test": chosen["test"] if chosen else None, "best_test": best,
            "regret": round(best - chosen["test"], 4) if chosen and best is not None else None,
            "finalists": sorted(rows, key=lambda r: -r["val"]), "wall_s": round(time.perf_counter() - started, 1)}


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["# Finalists scored on test", "",
             "Every candidate that reached full validation, rebuilt from its run record and scored on test. "
             "Regret: the best finalist's test score minus the returned program's.", "",
             "| task | optimizer | seed | returned | test | best finalist on test | regret | finalists "
             "(origin: val / held-out / test) |", "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        chosen = next((f for f in row["finalists"] if f["returned"]), None)
        best = max(row["finalists"], key=lambda f: f["test"], default=None)
        cells = "; ".join(f"{f['origin']}: {f['val']:.2f} / "
                          f"{'—' if f['held_out'] is None else format(f['held_out'], '.2f')} / {f['test']:.2f}"
                          for f in row["finalists"])
        lines.append(f"| {row['task']} | {row['optimizer']} | {row['seed']} | "
                     f"{chosen['origin'] if chosen else '—'} | {row['returned_test']} | "
                     f"{best['origin'] if best else '—'} ({row['best_test']}) | {row['regret']} | {cells} |")
    scored = [r for r in rows if r["regret"] is not None]
    if scored:
        best_returned = sum(r["regret"] == 0 for r in scored)
        lines += ["", f"The returned program was the best finalist on test in {best_returned} of {len(scored)} "
                      f"compiles; mean regret {statistics.fmean(r['regret'] for r in scored):.3f}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    honed.configure(model=args.model, optimizer_model=args.optimizer_model, cache_dir=args.cache_dir)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "finalists.json"
    config = {"model": args.model, "optimizer_model": args.optimizer_model or args.model, "budget": args.budget,
              "train_size": args.train_size, "val_size": args.val_size, "limit": args.limit}
    written = json.loads(path.read_text()) if path.exists() else {"config": config, "rows": []}
    if written["config"] != config:
        raise SystemExit(f"{path} was written under other settings ({written['config']}); "
                         "pass another --out, or the same settings to add seeds or tasks to it")
    rows: list[dict[str, Any]] = written["rows"]
    done = {(r["task"], r["optimizer"], r["seed"]) for r in rows}
    for task in _tasks(args):
        for optimizer in args.optimizers:
            if (task.name, optimizer, args.seed) in done:
                continue
            rows.append(compile_row(task, optimizer, args))
            path.write_text(json.dumps({"config": config, "rows": rows}, indent=2) + "\n")
            (out / "finalists.md").write_text(markdown(rows))
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "finalists"}), file=sys.stderr, flush=True)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
