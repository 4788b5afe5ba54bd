"""The seed paper's table in miniature: ABO against prompting and reflection baselines on BBH, offline.

Ma et al. (2024), "Are Large Language Models Good Prompt Optimizers?", test Automatic Behavior Optimization
on BIG-Bench Hard's `object_counting` and `navigate` with a capable optimizer model improving a weaker
target. Here: optimizer `gguf/qwen2.5-coder-1.5b`; targets `gguf/smollm2-135m` and `gguf/qwen2.5-coder-0.5b`;
every compile held to the same budget of model calls, seeded splits of each task's BBH file (30% train, of
which validation 20; the rest held out as test).

Rows: zero-shot (the task's program, uncompiled), zero-shot chain of thought (the reason-then-answer
pipeline, uncompiled), few-shot (DSPy's LabeledFewShot), the reflection baselines (COPRO, GEPA, honed's
`reflective`, each with the same optimizer model), ABO after refinement step 0, 1 and 2 (honed's
`behavior` with `refinement_steps` 0/1/2), and ABO without demonstrations. Each scored row carries a paired
bootstrap 90% interval of its difference to zero-shot. The paper's own numbers stand beside ours
(`PAPER`, with their source), measured with other models: compare the shape, not the level.

    python benchmarks/paper_table.py                        # everything (hours on 2 cores; minutes warm)
    python benchmarks/paper_table.py --tasks object_counting --targets gguf/smollm2-135m --limit 40

Writes `paper_table.json` and `paper_table.md` to `--out` (default `benchmarks/results/`) after every row,
so a stopped run keeps what it finished; a rerun answers finished rows from the cache and run ledgers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import executor_settings, run_row  # noqa: E402
from machine import describe_machine  # noqa: E402
from paired_bootstrap import paired_difference  # noqa: E402

import honed  # noqa: E402
from honed.cli.options import executor_options  # noqa: E402
from honed.programs import load_task  # noqa: E402

TASKS = ["object_counting", "navigate"]
TARGETS = ["gguf/smollm2-135m", "gguf/qwen2.5-coder-0.5b"]
OPTIMIZER_MODEL = "gguf/qwen2.5-coder-1.5b"
DEFAULT_BBH_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "bbh"

# row name -> (program kind, optimizer or "none", compile options)
ROWS: dict[str, tuple[str | None, str, dict[str, Any]]] = {
    "zero-shot": (None, "none", {}),
    "zero-shot CoT": ("pipeline", "none", {}),
    "few-shot (labeled)": (None, "labeled", {}),
    "COPRO": (None, "copro", {}),
    "GEPA": (None, "gepa", {}),
    "reflective": (None, "reflective", {}),
    "ABO step 0": (None, "behavior", {"refinement_steps": 0}),
    "ABO step 1": (None, "behavior", {"refinement_steps": 1}),
    "ABO step 2": (None, "behavior", {"refinement_steps": 2}),
    "ABO w/o demonstrations": (None, "behavior", {"refinement_steps": 2, "demonstrations": False}),
}
REFLECTION_BASELINES = ["COPRO", "GEPA", "reflective"]
PAPER_FILE = Path(__file__).resolve().parent / "paper_numbers.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"BBH task names (default {','.join(TASKS)})")
    parser.add_argument("--targets", default=",".join(TARGETS), help="target models, comma-separated")
    parser.add_argument("--optimizer-model", default=OPTIMIZER_MODEL, help=f"default {OPTIMIZER_MODEL}")
    parser.add_argument("--rows", default=",".join(ROWS), help="rows to run, comma-separated (default: all)")
    parser.add_argument("--budget", type=int, default=100, help="model calls per compile (default 100)")
    parser.add_argument("--limit", type=int, help="test examples per task (default: all held-out examples)")
    parser.add_argument("--train-size", type=int, default=100, help="training examples at most (default 100)")
    parser.add_argument("--val-size", type=int, default=20, help="validation examples (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bbh-dir", default=os.environ.get("HONED_BBH_DIR") or str(DEFAULT_BBH_DIR))
    parser.add_argument("--cache-dir", help="honed cache directory (default: honed's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="results folder")
    executor_options(parser)
    args = parser.parse_args(argv)
    unknown = [row for row in args.rows.split(",") if row not in ROWS]
    if unknown:
        parser.error(f"unknown rows: {', '.join(unknown)}; choose from {', '.join(ROWS)}")
    return args


def paper_numbers() -> dict[str, Any]:
    """The paper's numbers for these tasks, as transcribed with their source (empty if not transcribed)."""
    return json.loads(PAPER_FILE.read_text()) if PAPER_FILE.exists() else {}


def with_gain_over_zero_shot(rows: list[dict[str, Any]]) -> None:
    """Each scored row's paired bootstrap difference to its (task, target) zero-shot row."""
    for row in rows:
        base = next((r for r in rows if r["task"] == row["task"] and r["target"] == row["target"]
                     and r["row"] == "zero-shot" and r.get("test_scores")), None)
        if base and row.get("test_scores") and len(row["test_scores"]) == len(base["test_scores"]):
            row["vs_zero_shot"] = paired_difference([row["test_scores"]], [base["test_scores"]]).to_json()


def _cell(row: dict[str, Any] | None) -> str:
    if row is None:
        return "—"
    if row.get("test_score") is None:
        return "error"
    gain = row.get("vs_zero_shot")
    interval = f" ({gain['low']:+.2f}, {gain['high']:+.2f})" if gain and row["row"] != "zero-shot" else ""
    return f"{row['test_score']:.2f}{interval}"


def markdown(result: dict[str, Any]) -> str:
    config, rows, paper = result["config"], result["rows"], result.get("paper") or {}
    columns = [(task, target) for task in config["tasks"] for target in config["targets"]]
    lines = ["# The paper's table in miniature (BBH, offline)", "",
             f"Optimizer model `{config['optimizer_model']}`; budget {config['budget']} model calls per compile; "
             f"seed {config['seed']}. Test scores on the held-out part of each BBH file "
             f"({'first ' + str(config['limit']) if config['limit'] else 'all'} examples), with the paired bootstrap "
             "90% interval of the difference to zero-shot in parentheses.", ""]
    if config.get("partial"):
        lines += [f"**Partial:** {config['partial']}", ""]
    lines += ["| row | " + " | ".join(f"{task} on `{target.removeprefix('gguf/')}`" for task, target in columns)
              + " |", "|---" * (len(columns) + 1) + "|"]
    for name in config["rows"]:
        cells = [_cell(next((r for r in rows if (r["task"], r["target"], r["row"]) == (t, m, name)), None))
                 for t, m in columns]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    best = []
    for task, target in columns:
        scored = [r for r in rows if r["task"] == task and r["target"] == target and r["row"] in REFLECTION_BASELINES
                  and r.get("test_score") is not None]
        if scored:
            top = max(scored, key=lambda r: r["test_score"])
            best.append(f"{task} on {target}: {top['row']} ({top['test_score']:.2f})")
    if best:
        lines += ["", "Best reflection baseline: " + "; ".join(best) + "."]
    if paper:
        lines += ["", f"## The paper's numbers ({paper.get('source', {}).get('title', 'source')})", "",
                  f"Source: {json.dumps(paper.get('source'))}. Target models: {paper.get('target_models')}; optimizer "
                  f"model: {paper.get('optimizer_model')}.", "", "| method | task | target | score | where |",
                  "|---|---|---|---|---|"]
        for row in paper.get("rows", []):
            if any(task.replace("_", " ") in str(row.get("task", "")).lower() for task in config["tasks"]):
                lines.append(f"| {row.get('method')} | {row.get('task')} | {row.get('target_model')} | "
                             f"{row.get('score')} | {row.get('where')} |")
    lines += ["", "## Every row", "", "| task | target | row | test | val | calls | n | stop / error |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stop = str(r.get("error") or r.get("stop_reason") or "").replace("|", "/")[:80]
        lines.append(f"| {r['task']} | {r['target']} | {r['row']} | {r.get('test_score')} | {r.get('val_score')} | "
                     f"{r.get('calls')} | {r.get('test_n')} | {stop} |")
    return "\n".join(lines) + "\n"


def write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "paper_table.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "paper_table.md").write_text(markdown(result))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tasks, targets, row_names = args.tasks.split(","), args.targets.split(","), args.rows.split(",")
    config = {"tasks": tasks, "targets": targets, "rows": row_names, "optimizer_model": args.optimizer_model,
              "budget": args.budget, "seed": args.seed, "limit": args.limit, "train_size": args.train_size,
              "val_size": args.val_size, "executor": args.executor, "workers": args.workers,
              "ray_address": args.ray_address, "honed": honed.__version__, "machine": describe_machine(),
              "partial": "the run is still going"}
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    out = Path(args.out)
    for target in targets:
        honed.configure(model=target, optimizer_model=args.optimizer_model, cache_dir=args.cache_dir,
                        **executor_settings(args))
        for task_name in tasks:
            for name in row_names:
                program, optimizer, options = ROWS[name]
                task = load_task(f"bbh/{task_name}", program=program, bbh_dir=args.bbh_dir)
                row = run_row(task, optimizer, args, compile_as=None if optimizer == "none" else optimizer,
                              options=options)
                rows.append({"row": name, "target": target, **row, "task": task_name})
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "test_scores"}), file=sys.stderr,
                      flush=True)
                with_gain_over_zero_shot(rows)
                write({"config": config, "rows": rows, "paper": paper_numbers()}, out)
    config["partial"] = None
    config["wall_s"] = round(time.perf_counter() - started, 1)
    result = {"config": config, "rows": rows, "paper": paper_numbers()}
    write(result, out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
