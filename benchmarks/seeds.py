"""One verdict over several seeds: do honed's optimizers lead the best DSPy optimizer on every seed, or on one?

`compare.py` answers for one seed: one train/validation draw, one set of optimizer seeds. A lead there can be
that draw's luck (seed 0's +3.7 points became −3.0 at seed 1). This script reads the `compare.json` of each
seed's run and reports, per seed and pooled over seeds:

- each optimizer's mean test score over the tasks every compared optimizer finished;
- the best DSPy optimizer (highest mean) and each honed optimizer's difference to it, with the paired
  bootstrap 90% interval (pooled: every (seed, task) is a stratum whose examples are resampled);
- on how many tasks each honed optimizer beats the uncompiled program;
- whether the goal holds: the best honed optimizer at least `--lead` above the best DSPy one, with the
  interval's lower end above zero, and each honed optimizer above the uncompiled program on at least
  `--beats-none` tasks (per seed; pooled: on every seed).

    python benchmarks/seeds.py benchmarks/results/paper_setting/compare.json \\
        benchmarks/results/paper_setting_seed1/compare.json --out benchmarks/results/paper_setting_seeds

A table whose run had not finished (no `wall_s` in its config) or that lacks some of its tasks is labeled
partial, and so is the pooled verdict built on it. Writes `seeds.json` and `seeds.md` to `--out`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import DSPY_ROWS  # noqa: E402
from compare_files import read_compare  # noqa: E402
from paired_bootstrap import paired_difference  # noqa: E402

OURS = ["reflective", "behavior"]  # the goal's two; compare.py's OURS also holds the no-demonstrations ablation
UNCOMPILED = "none"


def load_tables(paths: list[Path]) -> list[dict[str, Any]]:
    """One table per seed: its seed, the tasks every optimizer in it scored, and the rows by (task, optimizer).

    Files of the same seed are merged, in the order given, a later file's row replacing an earlier one's: a
    rerun of one optimizer (a new revision) updates the seed's full table without rerunning the others."""
    by_seed: dict[Any, dict[str, Any]] = {}
    for path in paths:
        result = read_compare(path)
        config = result.get("config") or {}
        table = by_seed.setdefault(config.get("seed"), {"paths": [], "optimizers": [], "tasks": [], "rows": {},
                                                        "unfinished": []})
        table["paths"].append(str(path))
        table["optimizers"] += [o for o in config.get("optimizers", []) if o not in table["optimizers"]]
        table["tasks"] += [t for t in config.get("tasks", []) if t not in table["tasks"]]
        table["rows"].update({(r["task"], r["optimizer"]): r for r in result.get("rows", []) if r.get("test_scores")})
        if "wall_s" not in config:
            table["unfinished"].append(str(path))
    tables = []
    for seed, table in by_seed.items():
        optimizers = [o for o in table["optimizers"] if o in OURS + DSPY_ROWS + [UNCOMPILED]]
        tasks = [t for t in table["tasks"] if all((t, o) in table["rows"] for o in optimizers)]
        missing = [t for t in table["tasks"] if t not in tasks]
        partial = [f"{path} had not finished" for path in table["unfinished"]]
        if missing:
            partial.append(f"not every optimizer scored {', '.join(missing)}")
        tables.append({"path": ", ".join(table["paths"]), "seed": seed, "optimizers": optimizers, "tasks": tasks,
                       "rows": table["rows"], "partial": "; ".join(partial) or None})
    return tables


def verdict(strata: list[tuple[dict[str, Any], str]], optimizers: list[str], *, lead: float) -> dict[str, Any]:
    """Means, the best DSPy optimizer and each honed optimizer's paired difference to it over `strata`
    ((table, task) pairs: one seed's tasks, or every seed's)."""
    def scores(optimizer: str) -> list[list[float]]:
        return [table["rows"][(task, optimizer)]["test_scores"] for table, task in strata]

    # no stratum: no task finished by every optimizer yet (a run just started), so no mean to show
    means = {o: round(statistics.fmean(table["rows"][(t, o)]["test_score"] for table, t in strata), 4)
             if strata else None for o in optimizers}
    dspy_names = [o for o in optimizers if o in DSPY_ROWS]
    ours = [o for o in optimizers if o in OURS]
    if not strata or not dspy_names or not ours:
        return {"means": means, "best_dspy": None, "vs_best_dspy": {}, "best_ours": None, "lead_holds": False}
    best_dspy = max(dspy_names, key=lambda o: means[o])
    differences = {o: paired_difference(scores(o), scores(best_dspy)).to_json() for o in ours}
    best_ours = max(ours, key=lambda o: means[o])
    best = differences[best_ours]
    return {"means": means, "best_dspy": best_dspy, "vs_best_dspy": differences, "best_ours": best_ours,
            "lead_holds": best["diff"] >= lead and best["low"] > 0}


def beats_uncompiled(table: dict[str, Any], optimizer: str) -> list[str]:
    """The tasks on which `optimizer` scored above the uncompiled program on test."""
    return [t for t in table["tasks"]
            if table["rows"][(t, optimizer)]["test_score"] > table["rows"][(t, UNCOMPILED)]["test_score"]]


def summarize(tables: list[dict[str, Any]], *, lead: float, beats_none: int) -> dict[str, Any]:
    optimizers = [o for o in tables[0]["optimizers"] if all(o in t["optimizers"] for t in tables)]
    per_seed = []
    for table in tables:
        # each seed against every DSPy optimizer it ran; the pooled verdict against those all seeds ran
        result = verdict([(table, t) for t in table["tasks"]], table["optimizers"], lead=lead)
        wins = ({o: beats_uncompiled(table, o) for o in optimizers if o in OURS}
                if UNCOMPILED in optimizers else {})
        result.update(seed=table["seed"], path=table["path"], tasks=table["tasks"], partial=table["partial"],
                      beats_uncompiled={o: len(w) for o, w in wins.items()},
                      beats_uncompiled_holds=bool(wins) and all(len(w) >= beats_none for w in wins.values()))
        result["goal_holds"] = result["lead_holds"] and result["beats_uncompiled_holds"]
        per_seed.append(result)
    pooled = verdict([(table, t) for table in tables for t in table["tasks"]], optimizers, lead=lead)
    pooled["beats_uncompiled_holds"] = all(s["beats_uncompiled_holds"] for s in per_seed)
    pooled["goal_holds"] = pooled["lead_holds"] and pooled["beats_uncompiled_holds"]
    partial = [f"seed {t['seed']}: {t['partial']}" for t in tables if t["partial"]]
    return {"config": {"lead": lead, "beats_none": beats_none, "optimizers": optimizers,
                       "partial": "; ".join(partial) or None},
            "seeds": per_seed, "pooled": pooled}


def _interval(d: dict[str, Any] | None) -> str:
    return "—" if not d else f"{d['diff']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def markdown(summary: dict[str, Any]) -> str:
    config, seeds, pooled = summary["config"], summary["seeds"], summary["pooled"]
    optimizers = config["optimizers"]
    ours = [o for o in optimizers if o in OURS]
    lines = ["# Over seeds: honed's optimizers against the best DSPy optimizer", ""]
    if config["partial"]:
        lines += [f"**Partial:** {config['partial']}.", ""]
    lines += [f"Goal: the best honed optimizer at least {config['lead']:.2f} above the best DSPy optimizer (by "
              f"mean test score), the paired bootstrap 90% interval above zero, and each honed optimizer above "
              f"the uncompiled program on at least {config['beats_none']} tasks.", "",
              "| seed | tasks | " + " | ".join(optimizers) + " | best DSPy | "
              + " | ".join(f"{o} vs best DSPy (90% CI)" for o in ours)
              + " | " + " | ".join(f"{o} beats none" for o in ours) + " | goal |",
              "|---" * (len(optimizers) + 4 + 2 * len(ours)) + "|"]
    all_tasks = [t for seed in seeds for t in seed["tasks"]]
    for s in [*seeds, {**pooled, "seed": "pooled", "tasks": all_tasks}]:
        beats = s.get("beats_uncompiled", {})
        lines.append(f"| {s['seed']} | {len(s['tasks'])} | "
                     + " | ".join("—" if s['means'][o] is None else f"{s['means'][o]:.3f}" for o in optimizers)
                     + f" | {s['best_dspy'] or '—'} | "
                     + " | ".join(_interval(s["vs_best_dspy"].get(o)) for o in ours) + " | "
                     + " | ".join(f"{beats[o]}/{len(s['tasks'])}" if o in beats else "—" for o in ours)
                     + f" | {'met' if s['goal_holds'] else 'not met'} |")
    lines += ["", "Sources: " + ", ".join(f"seed {s['seed']}: `{s['path']}`" for s in seeds) + "."]
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tables", nargs="+", type=Path,
                        help="compare.json files (several of one seed are merged, a later file's rows first)")
    parser.add_argument("--lead", type=float, default=0.03, help="the lead the goal asks for (default 0.03)")
    parser.add_argument("--beats-none", type=int, default=4,
                        help="tasks each honed optimizer must beat the uncompiled program on (default 4)")
    parser.add_argument("--out", type=Path, required=True, help="folder for seeds.json and seeds.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tables = load_tables(args.tables)
    summary = summarize(tables, lead=args.lead, beats_none=args.beats_none)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "seeds.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "seeds.md").write_text(markdown(summary))
    print(markdown(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
