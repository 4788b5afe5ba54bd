"""The report's plot: validation score against distinct model requests, as an embedded PNG.

matplotlib is optional (the report's tables hold every value); without it there is no plot.
"""

from __future__ import annotations

import base64
import io
from typing import Any

from honed.pages.html import is_number
from honed.runs.records import Validate

PLOT_POINT_LABELS = 24  # label points with their candidate id up to this many validation points


def score_plot(validations: list[Validate], seed_id: str | None, full_n: Any, budget: Any,
               end: Any = None) -> str | None:
    """Validation score against distinct model requests, as base64 PNG; None without matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return None
    points = [r for r in validations if is_number(r.budget_used) and is_number(r.score)]
    # The Figure API renders on the Agg canvas directly: no pyplot, so no global backend switch or state.
    fig = Figure(figsize=(9, 4.4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)

    def is_full(r: Validate) -> bool:
        return not (is_number(r.n) and is_number(full_n) and r.n < full_n)

    groups = {
        "candidate (full validation)": [r for r in points if r.candidate != seed_id and is_full(r)],
        "candidate (partial validation)": [r for r in points if r.candidate != seed_id and not is_full(r)],
    }
    for label, rows in groups.items():
        if not rows:
            continue
        full = label.endswith("(full validation)")
        ax.scatter([r.budget_used for r in rows], [r.score for r in rows], s=46 if full else 36,
                   facecolors="#2f5fd0" if full else "none", edgecolors="#2f5fd0", linewidths=1.4, label=label,
                   zorder=3)
    seed_rows = [r for r in points if r.candidate == seed_id]
    if seed_rows:
        ax.scatter([r.budget_used for r in seed_rows], [r.score for r in seed_rows], s=170, marker="*",
                   color="#e8590c", edgecolors="#7a2e05", linewidths=0.8, label="seed", zorder=4)
    full_points = sorted((r for r in points if is_full(r)), key=lambda r: r.budget_used)
    if full_points:
        xs, ys, best = [], [], None
        for r in full_points:
            best = r.score if best is None else max(best, r.score)
            xs.append(r.budget_used)
            ys.append(best)
        last_x = max([r.budget_used for r in points] + ([end] if is_number(end) else []))
        xs.append(last_x)
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="#1d2430", linewidth=1.6, label="best so far", zorder=2)
    if len(points) <= PLOT_POINT_LABELS:
        for r in points:
            ax.annotate(str(r.candidate)[:8], (r.budget_used, r.score), textcoords="offset points",
                        xytext=(5, -11), fontsize=7, color="#667085")
    ax.set_xlabel("distinct model requests used (budget_used)")
    ax.set_ylabel("validation score")
    title = "Validation score vs model calls"
    if is_number(budget):
        title += f" (budget {budget})"
    ax.set_title(title, fontsize=11)
    ax.set_xlim(left=0)
    scores = [r.score for r in points]
    if scores and min(scores) >= 0 and max(scores) <= 1:
        ax.set_ylim(-0.04, 1.06)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


