"""The `honed` command line. `--json` prints one JSON object on stdout; errors print one line and exit 1.

Exit codes: 0 ok, 1 failure (with a one-line reason), 2 usage error (one line, naming `--help`).
No input makes it print a traceback: honed's own errors say what to do, and anything unexpected is one
line too (`HONED_DEBUG=1` re-raises it for the traceback).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from dspy.adapters.utils import serialize_for_json

from honed import cli_compile, cli_diagnose, cli_quickstart
from honed.adapter import check_program
from honed.artifact import load, verify
from honed.artifact_signing import env_key
from honed.cli_options import model_options, positive_int, task_options
from honed.config import configure
from honed.errors import ArtifactError, ConfigError, HonedError, ModelRequestBlocked, find_cause
from honed.evaluate import evaluate
from honed.programs import load_task, task_from_files
from honed.version import __version__

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

RUN_EPILOG = """examples:
  honed run sentiment.json --input '{"sentence": "A quiet triumph."}'
  honed run sentiment.json --inputs sentences.jsonl > answers.jsonl
  cat sentences.jsonl | honed run sentiment.json --inputs - --model ollama_chat/llama3.2
  honed run sentiment.json --key-env DEPLOY_KEY --inputs sentences.jsonl

--key-env VAR refuses an artifact that is not signed with the key in $VAR (honed.save(..., key=...));
with $HONED_ARTIFACT_KEY set, that key is checked the same way. Without either, a signature is not checked.

--input prints the outputs as one JSON object. --inputs prints one JSON object per non-blank input line,
in order: the outputs, or {"error": "FILE:LINE: ..."} for a line that failed; the run goes on, and exits 1
if any line failed. Keys other than the program's input fields are ignored.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (argparse prints the whole usage block first)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"text\": \"...\"}}', got {text!r}")
    return value


def _allow_class_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-class", action="append", default=[], metavar="MODULE:CLASS",
                        help="trust this program class when loading the artifact (repeatable); honed's own "
                             "programs are always trusted")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="honed", description="Compile and run typed DSPy programs.",
                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    cli_quickstart.add_parser(commands)

    ev = commands.add_parser("eval", help="evaluate a task's test split",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="examples:\n  honed eval sentiment --limit 100 --json\n"
                                    "  honed eval --train a.train.jsonl --test a.test.jsonl --program transform\n"
                                    "  honed eval sentiment --artifact sentiment.json --limit 100 --json")
    task_options(ev)
    ev.add_argument("--limit", type=positive_int, help="evaluate only the first N test examples")
    ev.add_argument("--artifact", help="evaluate the program saved in this artifact (the task gives the data and "
                                       "metric)")
    _allow_class_option(ev)
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--allow-errors", action="store_true",
                    help="exit 0 even when examples ended in errors (by default any error exits 1)")
    model_options(ev)

    run = commands.add_parser("run", help="run a saved artifact on inputs, printing JSON",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=RUN_EPILOG)
    run.add_argument("artifact", help="artifact file written by honed.save or honed compile")
    given = run.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", type=_json_object, metavar="JSON", help="one input object")
    given.add_argument("--inputs", metavar="FILE.jsonl", help="one input object per line ('-' reads stdin)")
    _allow_class_option(run)
    run.add_argument("--key-env", metavar="VAR",
                     help="refuse the artifact unless it is signed with the key in environment variable VAR "
                          "(default: $HONED_ARTIFACT_KEY when set)")
    model_options(run)
    cli_compile.add_parsers(commands)
    cli_diagnose.add_parsers(commands)
    return parser


def _configure(args: argparse.Namespace) -> Any:
    extra = {"api_base": args.api_base} if args.api_base else {}
    return configure(model=args.model, optimizer_model=getattr(args, "optimizer_model", None),
                           cache_dir=args.cache_dir, typed_outputs=args.typed_outputs,
                           max_tokens=args.max_tokens, num_threads=args.threads, **extra)


def _task(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    if args.task and (args.train or args.test):
        parser.error("give either TASK or --train/--test, not both")
    if args.task:
        return load_task(args.task, program=args.program, bbh_dir=args.bbh_dir)
    if not (args.train and args.test):
        parser.error("give a TASK name, or both --train FILE and --test FILE")
    return task_from_files(args.train, args.test, program=args.program)


def _input_fields(program: Any) -> list[str]:
    """What a program reads: its `input_fields` attribute if it declares one, else its first predictor's inputs."""
    declared = getattr(program, "input_fields", None)
    if isinstance(declared, list | tuple) and all(isinstance(name, str) for name in declared):
        return list(declared)
    predictors = program.named_predictors()
    return list(predictors[0][1].signature.input_fields) if predictors else []


def _load_artifact(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The program in `args.artifact`, and the task model it was saved under."""
    key = None
    key_env = getattr(args, "key_env", None)
    if key_env:
        key = env_key(key_env)
        if key is None:
            raise ConfigError(f"--key-env {key_env}: environment variable {key_env} is not set or empty; export "
                              "the artifact signing key in it")
    data = verify(args.artifact, allow_classes=args.allow_class, key=key)
    task_model = (data.get("models") or {}).get("task")
    saved_under = task_model.get("model") if isinstance(task_model, dict) else None
    return load(args.artifact, allow_classes=args.allow_class, key=key), saved_under


def _note_model(args: argparse.Namespace, saved_under: str | None, running_on: str) -> None:
    if args.model is None and saved_under and saved_under != running_on:
        print(f"honed: note: the artifact was saved under {saved_under}; running on {running_on} "
              "(pass --model to choose)", file=sys.stderr)


def cmd_eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    task = _task(args, parser)
    if args.artifact and args.program:
        parser.error("--program picks a fresh program; it cannot be combined with --artifact")
    saved_under = None
    if args.artifact:
        program, saved_under = _load_artifact(args)
        fields = _input_fields(program)
        if fields != [task.input_field]:
            raise ArtifactError(args.artifact, f"its program reads {', '.join(f'`{f}`' for f in fields) or 'nothing'}"
                                               f" but task {task.name} supplies `{task.input_field}`")
    else:
        program = task.program()
    settings = _configure(args)
    check_program(program)
    _note_model(args, saved_under, settings.lm.model)
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


def _run_one(program: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """The prediction's fields as JSON values."""
    prediction = program(**inputs)
    values = prediction.toDict() if hasattr(prediction, "toDict") else dict(prediction)
    return {name: serialize_for_json(value) for name, value in values.items()}


def _failure(exc: BaseException) -> str:
    blocked = find_cause(exc, ModelRequestBlocked)
    if blocked is not None:
        raise blocked
    ours = find_cause(exc, HonedError)  # e.g. ContextLengthExceeded, under DSPy's and litellm's wrappers
    if ours is not None:
        return str(ours).splitlines()[0]
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _pick_inputs(row: Any, fields: list[str]) -> tuple[dict[str, Any] | None, str | None]:
    if not isinstance(row, dict):
        return None, f"must be a JSON object, got {type(row).__name__}"
    missing = [name for name in fields if name not in row]
    if missing:
        return None, (f"missing field `{missing[0]}`; the program's inputs are "
                      f"{', '.join(f'`{f}`' for f in fields)}")
    return {name: row[name] for name in fields}, None


def _read_input_lines(where: str) -> list[tuple[int, str]]:
    try:
        text = sys.stdin.read() if where == "-" else Path(where).read_text(encoding="utf-8")
        text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None
    # Split on \n only: str.splitlines would also split inside a JSON string holding U+2028 or U+0085.
    lines = (line.removesuffix("\r") for line in text.split("\n"))
    return [(number, line) for number, line in enumerate(lines, start=1) if line.strip()]


def cmd_run(args: argparse.Namespace) -> int:
    program, saved_under = _load_artifact(args)
    fields = _input_fields(program)
    if args.input is not None:
        inputs, problem = _pick_inputs(args.input, fields)
        if problem:
            raise ConfigError(f"--input: {problem}")
        settings = _configure(args)
        check_program(program)
        _note_model(args, saved_under, settings.lm.model)
        try:
            outputs = _run_one(program, inputs)
        except Exception as exc:
            raise HonedError(f"the program failed: {_failure(exc)}") from exc
        print(json.dumps(outputs, ensure_ascii=False))
        return 0

    where = "<stdin>" if args.inputs == "-" else args.inputs
    jobs: list[tuple[dict[str, Any] | None, str | None]] = []
    for number, line in _read_input_lines(args.inputs):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            jobs.append((None, f"{where}:{number}: not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        inputs, problem = _pick_inputs(row, fields)
        jobs.append((inputs, f"{where}:{number}: {problem}" if problem else f"{where}:{number}"))
    settings = _configure(args)
    check_program(program)
    _note_model(args, saved_under, settings.lm.model)

    def one(job: tuple[dict[str, Any] | None, str | None]) -> tuple[bool, dict[str, Any]]:
        inputs, label = job
        if inputs is None:
            return False, {"error": label}
        try:
            return True, _run_one(program, inputs)
        except Exception as exc:
            return False, {"error": f"{label}: {_failure(exc)}"}

    failed = 0
    with ThreadPoolExecutor(max_workers=args.threads or 1) as pool:
        for ok, result in pool.map(one, jobs):
            failed += not ok
            print(json.dumps(result, ensure_ascii=False), flush=True)
    if failed:
        print(f"honed: error: {failed} of {len(jobs)} inputs failed; their output lines hold an \"error\" key",
              file=sys.stderr)
        return 1
    return 0


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
        if args.command == "eval":
            return cmd_eval(args, parser)
        if args.command == "run":
            return cmd_run(args)
        if args.command == "compile":
            task = _task(args, parser)
            settings = _configure(args)
            check_program(task.program())
            return cli_compile.cmd_compile(args, task, settings)
        if args.command == "report":
            return cli_compile.cmd_report(args)
        if args.command == "diagnose":
            return cli_diagnose.cmd_diagnose(args, lambda: _task(args, parser), lambda: _configure(args))
        return cli_quickstart.cmd_quickstart(args, lambda: _configure(args))
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


if __name__ == "__main__":
    sys.exit(main())
