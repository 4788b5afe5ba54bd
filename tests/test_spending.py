"""Where a compile's budget went (`honed.runs.spending`), in `Run`, on the report page and in
`benchmarks/budget_spent.py`: each record is charged the requests made since the record before it."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from honed.report import build_report
from honed.runs import Run
from honed.runs.records import (
    Demonstration,
    DraftedProcedure,
    Final,
    HeldOut,
    Observe,
    Validate,
    Verify,
)
from honed.runs.spending import spending

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import budget_spent  # noqa: E402

V1 = Path(__file__).parent / "ledgers_v1"


def _compile_records():
    return [
        Validate(step="seed/val", candidate="s", n=20, score=0.0, phase="seed", budget_used=20),
        DraftedProcedure(step="draft", budget_used=21),
        Demonstration(step="demo/0", budget_used=22),
        Demonstration(step="demo/1", budget_used=23),
        Validate(step="step0/race5/a", candidate="a", n=5, score=0.4, phase="step0", budget_used=28),
        HeldOut(step="confirm/seed", candidate="s", n=10, score=0.0, budget_used=38),
        Observe(step="step1/observe", candidate="a", budget_used=54),
        Verify(step="step1/verify/b", candidate={"id": "b"}, budget_used=60),
        Validate(step="step1/val/b", candidate="b", n=20, score=0.5, phase="step1", budget_used=75),
        Final(step="final", budget_used=75),
    ]


def test_each_activity_is_charged_the_requests_its_records_report():
    assert spending(_compile_records()) == {
        "validating the seed": 20, "proposing (optimizer model)": 1, "demonstrating (optimizer model)": 2,
        "validating candidates": 20, "observing and verifying on training examples": 22,
        "held-out confirmation": 10}
    # in the order a compile goes through them, whatever the order of the records
    assert list(spending(_compile_records())) == [
        "validating the seed", "proposing (optimizer model)", "demonstrating (optimizer model)",
        "validating candidates", "observing and verifying on training examples", "held-out confirmation"]


def test_records_without_a_count_or_with_a_lower_one_are_charged_nothing():
    records = [Validate(step="seed/val", candidate="s", n=4, score=0.0, phase="seed", budget_used=4),
               DraftedProcedure(step="draft"),  # no accounting: charged nothing
               Validate(step="r1/val/a", candidate="a", n=4, score=1.0, phase="r1", budget_used=3),
               HeldOut(step="confirm/seed", candidate="s", n=2, score=0.0, budget_used=6)]
    assert spending(records) == {"validating the seed": 4, "held-out confirmation": 2}
    assert spending([]) == {}


def test_a_run_accounts_for_every_request_it_used():
    for kind in ("behavior", "reflective", "dspy"):
        run = Run.open(V1 / kind)
        assert sum(run.spending.values()) == max(r.budget_used for r in run.records)
    behavior = Run.open(V1 / "behavior").spending
    assert behavior["validating the seed"] == 8 and behavior["demonstrating (optimizer model)"] == 6
    assert Run.open(V1 / "dspy").spending == {"validating the seed": 4, "DSPy's optimizer": 4,
                                              "validating candidates": 4}


def test_the_report_shows_where_the_requests_went():
    page = build_report(V1 / "reflective")
    section = page[page.index("Where the requests went"):]
    section = section[: section.index("</table>")]
    assert "<td>validating the seed</td><td>8</td><td>17%</td>" in section
    assert "observing and verifying on training examples" in section and "held-out" not in section


def test_the_benchmark_averages_per_optimizer_and_keeps_only_the_runs_asked_for(tmp_path, capsys):
    dirs = []
    for kind in ("behavior", "reflective"):
        for copy in (1, 2):
            target = tmp_path / "runs" / f"{kind}-{copy}"
            shutil.copytree(V1 / kind, target)
            dirs.append(str(target))
    settings = json.loads((tmp_path / "runs" / "behavior-2" / "settings.json").read_text())
    (tmp_path / "runs" / "behavior-2" / "settings.json").write_text(json.dumps({**settings, "budget": 100}))
    out = tmp_path / "out"
    assert budget_spent.main([*dirs, "--out", str(out)]) == 0
    result = json.loads((out / "budget_spent.json").read_text())
    by_optimizer = {g["optimizer"]: g for g in result["summary"]}
    assert by_optimizer["behavior"]["runs"] == 2 and by_optimizer["behavior"]["runs_that_observed"] == 2
    assert by_optimizer["behavior"]["mean_spent"]["validating the seed"] == 8
    assert "| reflective |" in (out / "budget_spent.md").read_text()
    assert budget_spent.main([*dirs, "--budget", "100", "--out", str(out)]) == 0
    assert [r["run_dir"] for r in json.loads((out / "budget_spent.json").read_text())["runs"]] == [dirs[1]]
    assert budget_spent.main([*dirs, "--budget", "7", "--out", str(out)]) == 1
    assert "no finished run directory matched" in capsys.readouterr().err
