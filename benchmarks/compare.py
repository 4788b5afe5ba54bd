"""Every optimizer, side by side, on the same program, model, adapter, cache and budget of model calls.

For each task: fixed seeded train and validation splits drawn from the task's training file, the test file
(or its first `--limit` examples) held out; the task's program; the same target model (`--model`) and
optimizer model (`--optimizer-model`, default: the target model) for every row. Rows: the uncompiled
program (`none`), DSPy's LabeledFewShot, BootstrapFewShot, COPRO, MIPROv2, GEPA and SIMBA, and honed's
`reflective`, `behavior` and `behavior-no-demos` (the ablation).
Every optimizer is held to `--budget` distinct model requests (cached answers count, so the number does
not depend on how warm the cache is). One extra row, `dspy-default-adapter`, runs the uncompiled program
of the first task under DSPy's own ChatAdapter (no JSON fallback) on the first `--default-adapter-limit`
test examples (its unparseable answers run to max_tokens, ~10 s each), to show what typed outputs buy.

Every row's per-example test scores are kept, and each row gets a paired bootstrap 90% confidence interval
of its test-score difference to the best DSPy row, per task and on the mean over tasks (`vs_best_dspy`).

Writes `compare.json` (every row), `compare.md` (mean and per-task tables) and `compare.png` (mean test
score against mean model calls) to `--out` (default `benchmarks/results/`).

    python benchmarks/compare.py                                  # the full run (hours on 2 cores; minutes warm)
    python benchmarks/compare.py --optimizer-model gguf/qwen2.5-coder-1.5b --out benchmarks/results/paper_setting
    python benchmarks/compare.py --tasks sentiment --optimizers none,labeled,behavior --budget 40 --limit 20
    python benchmarks/compare.py --train my.train.jsonl --test my.test.jsonl --optimizers none,behavior

Reruns are cheap: every model call is in the disk cache, and finished compiles are found in their run dirs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

import honed  # noqa: E402
from honed.cli.options import executor_options  # noqa: E402
from honed.compiling import affordable_val_size, compile_task, task_splits  # noqa: E402
from honed.config import current_cache  # noqa: E402
from honed.evaluate import EvalReport, evaluate  # noqa: E402
from honed.programs import Task, load_task, task_from_files  # noqa: E402
from honed.runs import Run  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe_machine  # noqa: E402
from paired_bootstrap import paired_difference  # noqa: E402

TASKS = ["sentiment", "first_word_letter", "singular_to_plural", "active_to_passive", "larger_animal",
         "word_in_context"]
OPTIMIZERS = ["none", "labeled", "bootstrap", "copro", "mipro", "gepa", "simba", "reflective", "behavior",
              "behavior-no-demos"]
DEFAULT_ADAPTER_ROW = "dspy-default-adapter"
OURS = {"reflective", "behavior", "behavior-no-demos"}
DSPY_ROWS = ["labeled", "bootstrap", "copro", "mipro", "gepa", "simba"]
RESULT_KEYS = ["task", "optimizer", "test_score", "val_score", "calls", "budget", "paid_calls", "tokens", "wall_s",
               "compile_s", "parse_failures", "test_n", "stop_reason", "error", "test_scores", "vs_best_dspy"]


def _csv(text: str, allowed: list[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {what}: {', '.join(unknown) or '(none given)'}; "
                                         f"choose from {', '.join(allowed)}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """The settings a row is measured under (budget, splits, seed, target model): one definition, so that
    every script that recompiles a row as this one does reads them with the same names and defaults."""
    parser.add_argument("--budget", type=_positive, default=100, help="model calls per optimizer (default 100)")
    parser.add_argument("--limit", type=_positive, help="test examples per task (default: all)")
    parser.add_argument("--train-size", type=_positive, default=100, help="training examples (default 100)")
    parser.add_argument("--val-size", type=_positive, default=20, help="validation examples (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed for splits and optimizers (default 0)")
    parser.add_argument("--model", default="gguf/smollm2-135m", help="target model (litellm string)")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=lambda t: _csv(t, honed.programs.bundled_task_names(), "task"),
                        default=TASKS, help=f"comma-separated bundled tasks (default: {','.join(TASKS)})")
    parser.add_argument("--train", help="training JSONL of your own task (with --test; replaces --tasks)")
    parser.add_argument("--test", help="test JSONL of your own task")
    parser.add_argument("--optimizers", type=lambda t: _csv(t, OPTIMIZERS, "optimizer"), default=OPTIMIZERS,
                        help=f"comma-separated (default: all: {','.join(OPTIMIZERS)})")
    add_setting_arguments(parser)
    parser.add_argument("--optimizer-model", help="the model optimizers reflect, propose and teach with "
                                                  "(default: the target model), e.g. gguf/qwen2.5-coder-1.5b")
    parser.add_argument("--cache-dir", help="honed cache directory (default: honed's)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="results folder")
    parser.add_argument("--default-adapter-limit", type=int, default=20,
                        help=f"test examples for the {DEFAULT_ADAPTER_ROW} row (default 20; 0 skips the row)")
    executor_options(parser)
    args = parser.parse_args(argv)
    if bool(args.train) != bool(args.test):
        parser.error("--train and --test go together")
    return args


def executor_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`honed.configure`'s executor arguments from `executor_options` (threads unless `--executor ray`)."""
    return {"executor": args.executor, "ray_address": args.ray_address, "workers": args.workers}


def _tasks(args: argparse.Namespace) -> list[Task]:
    if args.train:
        return [task_from_files(args.train, args.test)]
    return [load_task(name) for name in args.tasks]


def _test_set(task: Task, limit: int | None) -> list[dspy.Example]:
    return list(task.test[:limit] if limit else task.test)


def _row(task: Task, optimizer: str, **fields: Any) -> dict[str, Any]:
    return {key: fields.get(key) for key in RESULT_KEYS} | {"task": task.name, "optimizer": optimizer}


def first_compile_seconds(summary: dict[str, Any]) -> float | None:
    """How long the compile took in the run that wrote its ledger: the `elapsed_s` of the final record
    (a later rerun answered from the cache takes seconds and appends nothing, so this keeps the first
    run's time; it is seconds too when the ledger itself was written by a run from a warm cache)."""
    run_dir = summary.get("run_dir")
    if not run_dir:
        return None
    final = Run.open(run_dir).final
    return final.elapsed_s if final else None


# Rows that compile with another optimizer's name and options: row name -> (optimizer, options).
ROW_SPECS: dict[str, tuple[str, dict[str, Any]]] = {"behavior-no-demos": ("behavior", {"demonstrations": False})}


def run_row(task: Task, optimizer: str, args: argparse.Namespace, *, compile_as: str | None = None,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compile (unless `none`), then score on test. A failure becomes a row that says why.

    The row is named `optimizer`; it compiles with `compile_as` and `options` (default: `ROW_SPECS`, else
    the optimizer of that name with its defaults)."""
    cache = current_cache()
    started, paid_before, tokens_before = time.perf_counter(), cache.counts().misses, cache.tokens()
    test = _test_set(task, args.limit)
    summary: dict[str, Any] = {}
    try:
        if optimizer == "none":
            program = task.program()
            val_size = affordable_val_size(args.val_size, args.budget, len(program.named_predictors()))
            _, val = task_splits(task, train_size=args.train_size, val_size=val_size, seed=args.seed)
            summary = {"val_score": evaluate(program, val, task.metric, progress=False).score, "budget_used": 0,
                       "stop_reason": "no compile"}
        else:
            name, settings = (compile_as, options or {}) if compile_as else ROW_SPECS.get(optimizer, (optimizer, {}))
            outcome = compile_task(task, name, budget=args.budget, seed=args.seed, train_size=args.train_size,
                                   val_size=args.val_size, cache_dir=args.cache_dir, progress=False, **settings)
            program, summary = outcome.program, outcome.summary
        compile_tokens = cache.tokens() - tokens_before
        report = evaluate(program, test, task.metric, progress=False)
    except Exception as exc:  # a row that cannot run is recorded, never dropped
        traceback.print_exc(file=sys.stderr)
        return _row(task, optimizer, budget=args.budget, wall_s=round(time.perf_counter() - started, 1),
                    error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    note = summary.get("note") or (summary.get("stop_reason") or "")
    return _row(task, optimizer, test_score=round(report.score, 4), val_score=round(summary["val_score"], 4),
                calls=summary.get("budget_used", 0), budget=args.budget,
                paid_calls=cache.counts().misses - paid_before, tokens=compile_tokens,
                wall_s=round(time.perf_counter() - started, 1), compile_s=first_compile_seconds(summary),
                parse_failures=report.parse_failures, test_n=report.n, stop_reason=summary.get("stop_reason"),
                error=note if str(note).startswith("error") else None,
                test_scores=[round(r.score, 4) for r in report.results])


def default_adapter_row(task: Task, limit: int, args: argparse.Namespace) -> dict[str, Any]:
    """The uncompiled program under DSPy's default ChatAdapter, its JSON fallback off (which honed's provider
    would otherwise constrain): what plain DSPy gets from this model."""
    cache = current_cache()
    started, paid_before = time.perf_counter(), cache.counts().misses
    with dspy.context(adapter=dspy.ChatAdapter(use_json_adapter_fallback=False)):
        report: EvalReport = evaluate(task.program(), _test_set(task, limit), task.metric, progress=False)
    return _row(task, DEFAULT_ADAPTER_ROW, test_score=round(report.score, 4), calls=0, budget=args.budget,
                paid_calls=cache.counts().misses - paid_before, tokens=None,
                wall_s=round(time.perf_counter() - started, 1), parse_failures=report.parse_failures,
                test_n=report.n, stop_reason="no compile")


# ------------------------------------------------------------------------------------------- reporting


def aggregate(rows: list[dict[str, Any]], optimizers: list[str]) -> list[dict[str, Any]]:
    """Mean test score and mean calls per optimizer over the tasks where it produced a score."""
    means = []
    for optimizer in optimizers:
        mine = [r for r in rows if r["optimizer"] == optimizer]
        scored = [r for r in mine if r["test_score"] is not None]
        means.append({
            "optimizer": optimizer, "tasks": len(scored), "errors": len(mine) - len(scored),
            "mean_test": round(statistics.fmean(r["test_score"] for r in scored), 4) if scored else None,
            "mean_val": round(statistics.fmean(r["val_score"] for r in scored), 4) if scored else None,
            "mean_calls": round(statistics.fmean(r["calls"] for r in scored), 1) if scored else None,
        })
    return means


def compare_to_best_dspy(rows: list[dict[str, Any]], means: list[dict[str, Any]]) -> None:
    """Give every scored row, and every optimizer's mean, its paired bootstrap difference to the best DSPy row.

    Per task the best DSPy row is the DSPy optimizer with the highest test score on that task; on the mean
    it is the DSPy optimizer with the highest mean test score, compared over the tasks both have scores for.
    """
    scored = {(r["task"], r["optimizer"]): r for r in rows
              if r.get("test_scores") and r["optimizer"] != DEFAULT_ADAPTER_ROW}
    tasks = list(dict.fromkeys(task for task, _ in scored))
    for task in tasks:
        dspy_rows = [scored[(task, name)] for name in DSPY_ROWS if (task, name) in scored]
        if not dspy_rows:
            continue
        best = max(dspy_rows, key=lambda r: r["test_score"])
        for (row_task, _), row in scored.items():
            if row_task == task and len(row["test_scores"]) == len(best["test_scores"]):
                row["vs_best_dspy"] = {"against": best["optimizer"],
                                       **paired_difference([row["test_scores"]], [best["test_scores"]]).to_json()}
    dspy_means = [m for m in means if m["optimizer"] in DSPY_ROWS and m["mean_test"] is not None]
    if not dspy_means:
        return
    best_mean = max(dspy_means, key=lambda m: m["mean_test"])
    for mean in means:
        shared = [t for t in tasks if (t, mean["optimizer"]) in scored and (t, best_mean["optimizer"]) in scored
                  and len(scored[(t, mean["optimizer"])]["test_scores"])
                  == len(scored[(t, best_mean["optimizer"])]["test_scores"])]
        if shared:
            difference = paired_difference([scored[(t, mean["optimizer"])]["test_scores"] for t in shared],
                                           [scored[(t, best_mean["optimizer"])]["test_scores"] for t in shared])
            mean["vs_best_dspy"] = {"against": best_mean["optimizer"], "tasks": len(shared), **difference.to_json()}


def _interval(comparison: dict[str, Any] | None) -> str:
    if not comparison:
        return "—"
    return f"{comparison['diff']:+.3f} [{comparison['low']:+.3f}, {comparison['high']:+.3f}] vs {comparison['against']}"


def _cell(value: Any, digits: int = 2) -> str:
    if value is None:
        return "—"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(result: dict[str, Any]) -> str:
    rows, means, config = result["rows"], result["mean"], result["config"]
    tasks = list(dict.fromkeys(r["task"] for r in rows if r["optimizer"] != DEFAULT_ADAPTER_ROW))
    optimizer_model = config.get("optimizer_model") or config["model"]
    lines = [f"# Optimizers side by side: target `{config['model']}`, optimizer model `{optimizer_model}`", "",
             f"Budget {config['budget']} model calls per optimizer; train {config['train_size']} / validation "
             f"{config['val_size']} drawn from each task's training file (seed {config['seed']}); test: "
             f"{'the first ' + str(config['limit']) if config['limit'] else 'all'} examples of the test file. "
             f"Same program, target model, optimizer model, adapter and cache for every row. The last column: "
             f"the mean test-score difference to the best DSPy optimizer, with its paired bootstrap 90% interval.",
             "", "| optimizer | " + " | ".join(tasks) + " | mean test | mean calls | vs best DSPy (90% CI) |",
             "|---" * (len(tasks) + 4) + "|"]
    for mean in means:
        cells = []
        for task in tasks:
            row = next((r for r in rows if r["task"] == task and r["optimizer"] == mean["optimizer"]), None)
            cells.append("error" if row and row["error"] and row["test_score"] is None
                         else _cell(row["test_score"] if row else None))
        name = f"**{mean['optimizer']}**" if mean["optimizer"] in OURS else mean["optimizer"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {_cell(mean['mean_test'], 3)} | "
                     f"{_cell(mean['mean_calls'], 0)} | {_interval(mean.get('vs_best_dspy'))} |")
    extra = [r for r in rows if r["optimizer"] == DEFAULT_ADAPTER_ROW]
    for row in extra:
        lines += ["", f"`{DEFAULT_ADAPTER_ROW}` (uncompiled {row['task']} program under DSPy's ChatAdapter, no "
                      f"typed outputs): test {_cell(row['test_score'])}, parse failures {row['parse_failures']}"
                      f"/{row['test_n']}."]
    lines += ["", "## Every row", "",
              "`calls`: distinct model requests the compile made (its budget use); `paid calls`: of all requests "
              "in this row (compile and test), those the cache could not answer in this run; `compile s`: how long "
              "the compile took in the run that wrote its ledger (seconds where that run was itself answered from "
              "the cache); `wall s`: this run's time for the row.", "",
              "| task | optimizer | test | vs best DSPy (90% CI) | val | calls | paid calls | tokens | compile s "
              "| wall s | parse failures | stop |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        stop = r["error"] or r["stop_reason"] or ""
        lines.append(f"| {r['task']} | {r['optimizer']} | {_cell(r['test_score'])} | "
                     f"{_interval(r.get('vs_best_dspy'))} | {_cell(r['val_score'])} | "
                     f"{_cell(r['calls'])} | {_cell(r['paid_calls'])} | {_cell(r['tokens'])} | "
                     f"{_cell(r.get('compile_s'), 1)} | {_cell(r['wall_s'], 1)}"
                     f" | {_cell(r['parse_failures'])} | {str(stop).replace('|', '/')[:80]} |")
    return "\n".join(lines) + "\n"


def plot(means: list[dict[str, Any]], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for mean in means:
        if mean["mean_test"] is None:
            continue
        ours = mean["optimizer"] in OURS
        axes.scatter(mean["mean_calls"], mean["mean_test"], marker="*" if ours else "o", s=120 if ours else 50,
                     color="tab:red" if ours else "tab:blue")
        axes.annotate(mean["optimizer"], (mean["mean_calls"], mean["mean_test"]), textcoords="offset points",
                      xytext=(5, 4), fontsize=8)
    axes.set_xlabel("model calls used by the optimizer (mean over tasks)")
    axes.set_ylabel("test score (mean over tasks)")
    axes.set_title("Held-out score against optimizer cost")
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def summarize(config: dict[str, Any], rows: list[dict[str, Any]], optimizers: list[str]) -> dict[str, Any]:
    means = aggregate(rows, optimizers)
    compare_to_best_dspy(rows, means)
    return {"config": config, "rows": rows, "mean": means}


def write_results(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "compare.md").write_text(markdown(result))
    plot(result["mean"], out / "compare.png")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    honed.configure(model=args.model, optimizer_model=args.optimizer_model, cache_dir=args.cache_dir,
                    **executor_settings(args))
    tasks = _tasks(args)
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    config = {"model": args.model, "optimizer_model": args.optimizer_model or args.model, "budget": args.budget,
              "train_size": args.train_size, "val_size": args.val_size, "limit": args.limit, "seed": args.seed,
              "tasks": [t.name for t in tasks], "optimizers": args.optimizers, "executor": args.executor,
              "workers": args.workers, "ray_address": args.ray_address,
              "honed": honed.__version__, "dspy": dspy.__version__,
              "machine": describe_machine()}
    out = Path(args.out)
    for task in tasks:
        for optimizer in args.optimizers:
            row = run_row(task, optimizer, args)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            # after every row, so that a stopped run keeps what it finished
            write_results(summarize(config, rows, args.optimizers), out)
    if args.default_adapter_limit > 0:
        rows.append(default_adapter_row(tasks[0], args.default_adapter_limit, args))
    config["wall_s"] = round(time.perf_counter() - started, 1)
    result = summarize(config, rows, args.optimizers)
    write_results(result, out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
