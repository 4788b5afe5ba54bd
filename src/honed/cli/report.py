"""`honed report`: render a run directory, its ledger or an artifact as one HTML page, and print its path.

It needs no model and no task: everything the page shows was written by the compile.
"""

from __future__ import annotations

import argparse
from typing import Any

from honed.report import write_report


def register(commands: Any) -> None:
    rep = commands.add_parser("report", help="render a run directory or artifact as an HTML page",
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="example:\n  honed report ~/.cache/honed/runs/sentiment-reflective-1a2b3c "
                                     "--out r.html")
    rep.add_argument("source", help="run directory, ledger.jsonl, or artifact JSON")
    rep.add_argument("--out", help="HTML file to write (default: report.html in the run dir / beside the artifact)")
    rep.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    path = write_report(args.source, args.out)
    print(str(path))
    return 0
