"""The `honed` command line. `--json` prints one JSON object on stdout; errors print one line and exit 1.

Exit codes: 0 ok, 1 failure (with a one-line reason), 2 usage error (one line, naming `--help`).
No input makes it print a traceback: honed's own errors say what to do, and anything unexpected is one
line too (`HONED_DEBUG=1` re-raises it for the traceback).

Each command's module registers its subparser and a `handler(args, parser)` for it, so adding a command is
its module plus one line in `COMMANDS`; here is only the top-level parser and the error policy.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

# `import honed.cli.x`, not `from honed.cli import x`: the latter names the package, whose `__init__` imports
# this module, and `tests/test_import_graph.py` counts that as a cycle. `compile` alone would shadow the builtin.
import honed.cli.compile as compile_command
import honed.cli.diagnose as diagnose
import honed.cli.evaluate as evaluate
import honed.cli.quickstart as quickstart
import honed.cli.report as report
import honed.cli.run as run
from honed.errors import HonedError, ModelRequestBlocked, find_cause
from honed.version import __version__

# In the order `honed --help` lists them.
COMMANDS = (quickstart, evaluate, run, compile_command, report, diagnose)

EPILOG = """examples:
  honed quickstart
  honed eval sentiment --limit 100 --json
  honed eval --train my.train.jsonl --test my.test.jsonl --model ollama_chat/llama3.2
  honed eval sentiment --model openai/my-model --api-base http://127.0.0.1:8000/v1 --typed-outputs llama.cpp
  honed eval sentiment --artifact sentiment.json --limit 100 --json
  honed run sentiment.json --input '{"sentence": "A quiet triumph."}'
  honed run sentiment.json --inputs sentences.jsonl > answers.jsonl
  honed compile sentiment --optimizer reflective --budget 600 --seed 0 --out sentiment.json
  honed report ~/.cache/honed/runs/<run> --out report.html
  honed diagnose reflection sentiment --optimizer reflective --budget 300 --out diag/
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="honed", description="Compile and run typed DSPy programs.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args, parser)
    except HonedError as exc:
        print(f"honed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("honed: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        return _unexpected(exc)


def _unexpected(exc: Exception) -> int:
    """One line for an error honed did not foresee (a bug); `HONED_DEBUG=1` re-raises it for the traceback.

    A model request made while unit tests block them is re-raised, so the test that made it fails loudly.
    """
    if os.environ.get("HONED_DEBUG") or find_cause(exc, ModelRequestBlocked) is not None:
        raise exc
    message = f"{type(exc).__name__}: {exc}".splitlines()[0]
    print(f"honed: error: unexpected {message} (a bug in honed? HONED_DEBUG=1 shows the traceback)", file=sys.stderr)
    return 1
