"""The README's table of a `compare.py` run: test score per task and optimizer, the mean, and the paired
bootstrap 90% interval of each row's mean difference to the best DSPy optimizer, on the tasks every row
finished (a partial run shows only those).

    python benchmarks/readme_table.py benchmarks/results/paper_setting/compare.json
    python benchmarks/readme_table.py A.json --extra "behavior (new)=B.json:behavior"

`--extra LABEL=FILE:OPTIMIZER` adds the rows of OPTIMIZER from another run (say, a changed optimizer measured
under the same settings) as a row named LABEL.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from paired_bootstrap import paired_difference  # noqa: E402

DSPY_ROWS = ("labeled", "bootstrap", "copro", "mipro", "gepa", "simba")
HONED_ROWS = ("reflective", "behavior", "behavior-no-demos")


def load_rows(path: str) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    result = json.loads(Path(path).read_text())
    return result["rows"], result["config"]["optimizers"], result["config"]["tasks"]


def table(rows: list[dict[str, Any]], optimizers: list[str], tasks: list[str]) -> str:
    by = {(r["task"], r["optimizer"]): r for r in rows if r.get("test_scores")}
    done = [t for t in tasks if all((t, o) in by for o in optimizers)]
    if not done:
        raise SystemExit("no task has a row for every optimizer yet")
    means = {o: statistics.fmean(by[(t, o)]["test_score"] for t in done) for o in optimizers}
    best = max((o for o in optimizers if o in DSPY_ROWS), key=lambda o: means[o])
    lines = ["| optimizer | " + " | ".join(done) + " | mean | mean calls | vs best DSPy, mean (90% CI) |",
             "|---" * (len(done) + 4) + "|"]
    for o in optimizers:
        d = paired_difference([by[(t, o)]["test_scores"] for t in done], [by[(t, best)]["test_scores"] for t in done])
        name = o if o in DSPY_ROWS or o == "none" else f"**{o}**"
        calls = statistics.fmean(by[(t, o)]["calls"] or 0 for t in done)
        lines.append(f"| {name} | " + " | ".join(f"{by[(t, o)]['test_score']:.2f}" for t in done)
                     + f" | {means[o]:.3f} | {calls:.0f} | {d.diff:+.3f} [{d.low:+.3f}, {d.high:+.3f}] vs {best} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="compare.json of a compare.py run")
    parser.add_argument("--extra", action="append", default=[], metavar="LABEL=FILE:OPTIMIZER",
                        help="rows of OPTIMIZER from another run, shown as LABEL")
    args = parser.parse_args(argv)
    rows, optimizers, tasks = load_rows(args.results)
    for spec in args.extra:
        label, _, source = spec.partition("=")
        path, _, optimizer = source.rpartition(":")
        extra, _, _ = load_rows(path)
        rows += [{**r, "optimizer": label} for r in extra if r["optimizer"] == optimizer]
        optimizers.append(label)
    print(table(rows, optimizers, tasks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
