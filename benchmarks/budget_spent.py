"""Where the budget went, over many compiles: requests per activity (`honed.runs.spending`), per run and
averaged per optimizer, read from run directories' typed records.

    python benchmarks/budget_spent.py ~/.cache/honed/runs/*-behavior-* --budget 100 --out budget_spent

`--budget`, `--revision`, `--optimizer-model`, `--task-model` keep only the runs whose settings say so (a
run directory is kept per settings, so one cache's runs of many revisions can be read at once). Writes
`budget_spent.json` and `budget_spent.md` to `--out`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from honed.runs import Run  # noqa: E402
from honed.runs.spending import ACTIVITIES, OBSERVING  # noqa: E402

FILTERS = ("budget", "revision", "optimizer_model", "task_model")


def wanted(settings: dict[str, Any], filters: dict[str, Any]) -> bool:
    return all(value is None or str(settings.get(key)) == str(value) for key, value in filters.items())


def read_runs(run_dirs: list[Path], filters: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per finished run directory its settings keep: what it is and its requests per activity."""
    rows = []
    for run_dir in run_dirs:
        run = Run.open(run_dir)
        if run.final is None or not wanted(run.settings, filters):
            continue
        s = run.settings
        rows.append({"run_dir": str(run_dir), "task": s.get("task"), "optimizer": run.optimizer,
                     "revision": s.get("revision"), "seed": s.get("seed"), "budget": s.get("budget"),
                     "used": run.final.budget_used, "stop_reason": run.final.stop_reason, "spent": run.spending})
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (optimizer, revision): runs, mean requests per activity, and in how many runs refinement (the
    target observed and edits verified on training examples) got any requests at all."""
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["optimizer"], row["revision"]), []).append(row)
    summary = []
    for (optimizer, revision), members in sorted(groups.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1]))):
        means = {a: sum(m["spent"].get(a, 0) for m in members) / len(members) for a in ACTIVITIES}
        summary.append({"optimizer": optimizer, "revision": revision, "runs": len(members),
                        "mean_used": sum(m["used"] or 0 for m in members) / len(members),
                        "mean_spent": {a: v for a, v in means.items() if v},
                        "runs_that_observed": sum(bool(m["spent"].get(OBSERVING)) for m in members)})
    return summary


def markdown(rows: list[dict[str, Any]], summary: list[dict[str, Any]]) -> str:
    used = [a for a in ACTIVITIES if any(a in r["spent"] for r in rows)]
    lines = ["# Where the budget went", "",
             "Requests charged to each compile's budget, per activity (`honed.runs.spending`).", "",
             "| optimizer | revision | runs | mean requests | " + " | ".join(used) + " | runs that observed |",
             "|---|---|---|---|" + "---|" * len(used) + "---|"]
    for g in summary:
        cells = [f"{g['mean_spent'].get(a, 0):.1f}" for a in used]
        lines.append(f"| {g['optimizer']} | {g['revision']} | {g['runs']} | {g['mean_used']:.1f} | "
                     + " | ".join(cells) + f" | {g['runs_that_observed']} of {g['runs']} |")
    lines += ["", "## Every run", "",
              "| task | optimizer | revision | seed | used | " + " | ".join(used) + " | stop |",
              "|---|---|---|---|---|" + "---|" * len(used) + "---|"]
    for r in sorted(rows, key=lambda r: (str(r["optimizer"]), str(r["revision"]), str(r["seed"]), str(r["task"]))):
        cells = [str(r["spent"].get(a, 0)) for a in used]
        lines.append(f"| {r['task']} | {r['optimizer']} | {r['revision']} | {r['seed']} | {r['used']} | "
                     + " | ".join(cells) + f" | {r['stop_reason']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="run directories")
    for key in FILTERS:
        parser.add_argument(f"--{key.replace('_', '-')}", default=None, help=f"keep runs whose {key} is this")
    parser.add_argument("--out", type=Path, required=True, help="folder for budget_spent.json and .md")
    args = parser.parse_args(argv)
    rows = read_runs(args.run_dirs, {key: getattr(args, key) for key in FILTERS})
    if not rows:
        print("no finished run directory matched", file=sys.stderr)
        return 1
    summary = summarize(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "budget_spent.json").write_text(json.dumps({"summary": summary, "runs": rows}, indent=2) + "\n")
    text = markdown(rows, summary)
    (args.out / "budget_spent.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
