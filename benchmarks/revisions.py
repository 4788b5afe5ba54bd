"""Did a new revision of one optimizer score higher than the old one, on the same tasks and seeds?

`seeds.py` compares honed's optimizers with DSPy's. Before a change of an optimizer's search is adopted,
its rows are compared with the previous revision's on the same (seed, task) pairs: the mean test-score
difference, new minus old, pooled over every pair, with the paired bootstrap 90% interval (each pair a
stratum whose test examples are resampled), and the pairs where each is ahead.

    python benchmarks/revisions.py --optimizer behavior \\
        --old benchmarks/results/paper_setting_r7_one_machine/s{0_behavior,1_honed,2_honed}/compare.json \\
        --new benchmarks/results/behavior_r8_to_r10_not_adopted/r10/s{0,1,2}/compare.json

Prints a Markdown table; `--out FILE` also writes it, with the numbers as JSON beside it (`FILE.json`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_files import read_compare  # noqa: E402
from paired_bootstrap import paired_difference  # noqa: E402


def rows_by_pair(paths: list[Path], optimizer: str) -> dict[tuple[Any, str], list[float]]:
    """(seed, task) -> the optimizer's per-example test scores, over every file (a later file wins)."""
    found: dict[tuple[Any, str], list[float]] = {}
    for path in paths:
        result = read_compare(path)
        seed = (result.get("config") or {}).get("seed")
        for row in result.get("rows", []):
            if row.get("optimizer") == optimizer and row.get("test_scores"):
                found[(seed, row["task"])] = list(row["test_scores"])
    return found


def compare(old: dict[tuple[Any, str], list[float]], new: dict[tuple[Any, str], list[float]]) -> dict[str, Any]:
    pairs = sorted(set(old) & set(new), key=lambda p: (str(p[0]), p[1]))
    if not pairs:
        raise SystemExit("no (seed, task) pair has the optimizer's rows in both --old and --new")
    for pair in pairs:
        if len(old[pair]) != len(new[pair]):
            raise SystemExit(f"seed {pair[0]}, task {pair[1]}: {len(old[pair])} test scores in --old and "
                             f"{len(new[pair])} in --new; compare runs on the same test examples")
    diff = paired_difference([new[p] for p in pairs], [old[p] for p in pairs])
    per_pair = [{"seed": s, "task": t, "old": sum(old[(s, t)]) / len(old[(s, t)]),
                 "new": sum(new[(s, t)]) / len(new[(s, t)])} for s, t in pairs]
    return {"pairs": per_pair, "difference": diff.diff, "low": diff.low, "high": diff.high, "level": diff.level,
            "new_ahead": sum(p["new"] > p["old"] for p in per_pair),
            "old_ahead": sum(p["new"] < p["old"] for p in per_pair)}


def markdown(result: dict[str, Any], optimizer: str) -> str:
    lines = [f"| seed | task | {optimizer}, old | {optimizer}, new |", "|---|---|---|---|"]
    lines += [f"| {p['seed']} | {p['task']} | {p['old']:.2f} | {p['new']:.2f} |" for p in result["pairs"]]
    old_mean = sum(p["old"] for p in result["pairs"]) / len(result["pairs"])
    new_mean = sum(p["new"] for p in result["pairs"]) / len(result["pairs"])
    lines.append(f"| all | {len(result['pairs'])} pairs | {old_mean:.3f} | {new_mean:.3f} |")
    lines.append("")
    lines.append(f"New minus old: {result['difference']:+.3f}, paired bootstrap {result['level']:.0%} interval "
                 f"[{result['low']:+.3f}, {result['high']:+.3f}]; new ahead on {result['new_ahead']} pairs, old "
                 f"on {result['old_ahead']}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizer", required=True, help="the optimizer whose rows are compared")
    parser.add_argument("--old", nargs="+", type=Path, required=True, help="compare.json files of the old revision")
    parser.add_argument("--new", nargs="+", type=Path, required=True, help="compare.json files of the new revision")
    parser.add_argument("--out", type=Path, help="write the Markdown table here (and FILE.json)")
    args = parser.parse_args(argv)
    result = compare(rows_by_pair(args.old, args.optimizer), rows_by_pair(args.new, args.optimizer))
    text = markdown(result, args.optimizer)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_name(args.out.name + ".json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
