"""`honed eval` with threads against `--executor ray`, on this machine, and what that predicts for more workers.

Why: Ray (`executor="ray"`) is only worth its start-up where it is faster, and its promise is that it scales
with workers while the cache and the budget stay on the driver. This measures both halves:

1. `honed eval TASK --limit N --json` as a user runs it, one process each, from a cold cache and again warm:
   threads (the embedded model in the process) and `--executor ray --workers W` (a local Ray started by that
   process). Process wall time, the evaluation's own `wall_s`, calls and score; scores and calls must agree.
2. The per-request costs behind an estimate for more workers, from one more cold Ray evaluation in this
   process, once its actors are up and their models loaded: seconds a request spends in an actor's provider
   (generation), seconds the driver waits for one (generation plus Ray's round trip), and the driver's CPU
   seconds per request (adapter, cache, litellm, dispatch: the work that stays serial on the driver however
   many actors there are).

The estimate for W workers is min(W / wait per request, 1 / driver CPU per request) requests per second: each
actor serves one request at a time on one core, and the driver must prepare every request. It assumes one core
per actor, a driver with a core of its own and a model as fast as here; it is arithmetic, not a measurement.

    python benchmarks/ray_executor.py                         # first_word_letter, 50 examples, 2 workers
    python benchmarks/ray_executor.py --limit 10 --out-dir /tmp/ray-bench     # a quick check that it runs

Writes `ray_executor.json` and `ray_executor.md` to `--out-dir` (default `benchmarks/results/`). Every cache
is a fresh temporary folder; nothing touches `~/.cache/honed`. Needs Ray (`pip install "honed[ray]"`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import honed  # noqa: E402
from honed.models.ray_provider import active_ray_provider, use_threads  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
ESTIMATE_WORKERS = (8, 64)
SAME = ("score", "n", "parse_failures", "errors", "lm_calls")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", default="first_word_letter")
    parser.add_argument("--limit", type=int, default=50, help="test examples per evaluation")
    parser.add_argument("--workers", type=int, default=2, help="Ray actors")
    parser.add_argument("--model", default="gguf/smollm2-135m")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run_eval(args: argparse.Namespace, cache_dir: Path, *extra: str) -> dict[str, Any]:
    """One `honed eval --json` in its own process: its printed summary plus the process's wall time."""
    command = [sys.executable, "-m", "honed.cli", "eval", args.task, "--limit", str(args.limit), "--json",
               "--model", args.model, "--cache-dir", str(cache_dir), *extra]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"ray_executor: {' '.join(command[2:])} failed:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    return {**summary, "process_wall_s": round(wall, 2)}


def measure_cli(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    ray_flags = ("--executor", "ray", "--workers", str(args.workers))
    runs: dict[str, Any] = {}
    for name, extra in (("threads", ()), ("ray", ray_flags)):
        cache = scratch / name
        runs[name] = {"cold": run_eval(args, cache, *extra), "warm": run_eval(args, cache, *extra)}
        print(f"{name}: cold {runs[name]['cold']['process_wall_s']}s (eval {runs[name]['cold']['wall_s']}s), "
              f"warm {runs[name]['warm']['process_wall_s']}s", file=sys.stderr)
    runs["agree"] = all(runs["threads"]["cold"][k] == runs["ray"]["cold"][k] for k in SAME)
    return runs


def measure_costs(args: argparse.Namespace, scratch: Path) -> dict[str, Any]:
    """Per-request costs of a cold Ray evaluation in this process (the driver's CPU is this process's), with
    the actors already started."""
    honed.configure(model=args.model, cache_dir=scratch / "costs", executor="ray", workers=args.workers)
    provider = active_ray_provider()
    assert provider is not None
    task = honed.load_task(args.task)
    examples = task.test[: args.limit]
    # Steady state: start every actor and load its model on training examples first, so the per-request
    # costs below are those of a long evaluation, not of Ray starting processes.
    honed.evaluate(task.program(), task.train[: 2 * args.workers], task.metric, progress=False)
    before = provider.pool.stats.as_dict()
    cpu, wall = time.process_time(), time.perf_counter()
    report = honed.evaluate(task.program(), examples, task.metric, progress=False)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    after = provider.pool.stats.as_dict()
    use_threads()
    requests = int(after["completed"] - before["completed"])
    if requests == 0:
        raise SystemExit("ray_executor: the cost run made no model call (is the cache really empty?)")
    return {
        "requests": requests, "lm_calls": report.lm_calls, "wall_s": round(wall, 3),
        "actor_s_per_request": round((after["actor_s"] - before["actor_s"]) / requests, 4),
        "wait_s_per_request": round((after["wait_s"] - before["wait_s"]) / requests, 4),
        "driver_cpu_s_per_request": round(cpu / requests, 4),
        "requests_per_s": round(requests / wall, 3),
    }


def estimate(costs: dict[str, Any], workers: int) -> dict[str, Any]:
    """Requests per second W actors could sustain: actor-bound, unless the driver's serial work is the limit."""
    actors = workers / costs["wait_s_per_request"]
    driver = 1 / costs["driver_cpu_s_per_request"] if costs["driver_cpu_s_per_request"] > 0 else float("inf")
    return {"workers": workers, "requests_per_s": round(min(actors, driver), 1),
            "bound": "actors" if actors <= driver else "driver", "actor_bound_requests_per_s": round(actors, 1),
            "driver_bound_requests_per_s": round(driver, 1)}


def markdown(result: dict[str, Any]) -> str:
    runs, costs = result["cli"], result["costs"]
    lines = [
        f"# `honed eval {result['task']} --limit {result['limit']}`: threads vs `--executor ray --workers "
        f"{result['workers']}`",
        "",
        f"{result['machine']['cpus']} CPUs ({result['machine']['platform']}), model `{result['model']}`, "
        f"{result['date']}. Each row is one `honed eval --json` process with a fresh cache (cold), then the same "
        "command again (warm).",
        "",
        "| executor | cold: process s | cold: eval s | warm: process s | warm: eval s | lm_calls (cold) | score |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("threads", "ray"):
        cold, warm = runs[name]["cold"], runs[name]["warm"]
        lines.append(f"| {name} | {cold['process_wall_s']} | {cold['wall_s']} | {warm['process_wall_s']} | "
                     f"{warm['wall_s']} | {cold['lm_calls']} | {cold['score']} |")
    lines += [
        "",
        f"Threads and Ray agree on score, n, parse failures, errors and calls: **{runs['agree']}**.",
        "",
        f"Per request, from a cold Ray evaluation of {costs['requests']} requests in one process, its actors "
        "already started: "
        f"{costs['actor_s_per_request']} s in an actor's provider, {costs['wait_s_per_request']} s waited for "
        f"by the driver (generation + Ray round trip), {costs['driver_cpu_s_per_request']} CPU s on the driver; "
        f"{costs['requests_per_s']} requests/s measured.",
        "",
        "**Estimate, not a measurement**: min(W / wait per request, 1 / driver CPU per request), assuming one "
        "core per actor and a driver core of its own.",
        "",
        "| workers | estimated requests/s | bound by | actor-bound | driver-bound |",
        "|---|---|---|---|---|",
    ]
    for row in result["estimates"]:
        lines.append(f"| {row['workers']} | {row['requests_per_s']} | {row['bound']} | "
                     f"{row['actor_bound_requests_per_s']} | {row['driver_bound_requests_per_s']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="honed-ray-bench-") as scratch:
        cli = measure_cli(args, Path(scratch))
        costs = measure_costs(args, Path(scratch))
    result = {
        "task": args.task, "limit": args.limit, "workers": args.workers, "model": args.model,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "HONED_GGUF_THREADS": os.environ.get("HONED_GGUF_THREADS")},
        "cli": cli, "costs": costs, "estimates": [estimate(costs, w) for w in ESTIMATE_WORKERS],
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "ray_executor.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out_dir / "ray_executor.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0 if cli["agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
