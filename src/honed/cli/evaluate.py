"""`honed eval`: score a task's test split with its fresh program, or with the program saved in an artifact.

Any example that ended in an error (not a wrong answer) exits 1 unless `--allow-errors`: a score over
failed calls means nothing, and a CI job with a wrong key must not pass.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from honed.adapter import check_program
from honed.cli.options import (
    allow_class_option,
    configure_from,
    executor_options,
    input_fields,
    load_artifact,
    model_options,
    note_model,
    positive_int,
    task_from,
    task_options,
)
from honed.errors import ArtifactError
from honed.evaluate import evaluate
from honed.programs import check_task_fits

EPILOG = """examples:
  honed eval sentiment --limit 100 --json
  honed eval --train a.train.jsonl --test a.test.jsonl --program transform
  honed eval sentiment --artifact sentiment.json --limit 100 --json"""


def register(commands: Any) -> None:
    ev = commands.add_parser("eval", help="evaluate a task's test split",
                             formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    task_options(ev)
    ev.add_argument("--limit", type=positive_int, help="evaluate only the first N test examples")
    ev.add_argument("--artifact", help="evaluate the program saved in this artifact (the task gives the data and "
                                       "metric)")
    allow_class_option(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--allow-errors", action="store_true",
                    help="exit 0 even when examples ended in errors (by default any error exits 1)")
    model_options(ev)
    executor_options(ev)
    ev.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    task = task_from(args, parser)
    if args.artifact and args.program:
        parser.error("--program picks a fresh program; it cannot be combined with --artifact")
    saved_under = None
    if args.artifact:
        program, saved_under = load_artifact(args)
        fields = input_fields(program)
        if fields != [task.input_field]:
            raise ArtifactError(args.artifact, f"its program reads {', '.join(f'`{f}`' for f in fields) or 'nothing'}"
                                               f" but task {task.name} supplies `{task.input_field}`")
    else:
        program = task.program()
    settings = configure_from(args)
    check_task_fits(task, settings.lm)  # a row too long for the model's context is refused before any call
    check_program(program)
    note_model(args, saved_under, settings.lm.model)
    examples = task.test[: args.limit] if args.limit else task.test
    report = evaluate(program, examples, task.metric, progress=False if args.json else None)
    summary = {"task": task.name, "model": settings.lm.model, **report.summary()}
    if args.artifact:
        summary["artifact"] = args.artifact
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{task.name} on {settings.lm.model}: score {report.score:.3f} over {report.n} examples")
        print(f"  parse failures {report.parse_failures}, other errors {report.errors}")
        first = next((r for r in report.results if r.error), None)
        if first is not None:
            print(f"  first failure: {_example_label(first.example, task.input_field)}: {_reason(first.error)}")
        print(f"  model calls {report.lm_calls}, cache hits {report.cache_hits}, "
              f"tokens {report.prompt_tokens} in / {report.completion_tokens} out, {report.wall_s:.1f}s")
    if report.errors and not args.allow_errors:
        # An error (HTTP 401, 500, a timeout) is not a wrong answer: a score over failed calls means nothing,
        # and a CI job with a wrong key must not pass.
        first = next(r for r in report.results if r.error and not r.parse_failure)
        print(f"honed: error: {report.errors} of {report.n} examples ended in an error, not an answer (first: "
              f"{_reason(first.error).splitlines()[0][:200]}); fix the cause, or pass --allow-errors to score "
              "them as wrong", file=sys.stderr)
        return 1
    return 0


def _example_label(example: Any, input_field: str) -> str:
    """An example as a user can find it: its id, else the start of its input."""
    ident = example.get("id") if hasattr(example, "get") else None
    if ident:
        return f"example {ident}"
    text = str(example.get(input_field, "")) if hasattr(example, "get") else ""
    return f"input {text[:40]!r}" + ("..." if len(text) > 40 else "")


def _reason(error: str) -> str:
    """An example's recorded error without the wrappers litellm and DSPy put in front of honed's message."""
    for marker in ("GgufException - ", "litellm.BadRequestError: "):
        if marker in error:
            return error.split(marker, 1)[1]
    return error
