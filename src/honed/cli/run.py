"""`honed run`: run a saved artifact on one input, or on a JSONL file of them, printing JSON.

With `--inputs`, a line that fails prints `{"error": ...}` in its place and the run goes on, so one bad
line does not lose the answers to the others; the exit status still says that some line failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO

from dspy.adapters.utils import serialize_for_json

from honed.adapter import check_program
from honed.cli.options import allow_class_option, configure_from, input_fields, load_artifact, model_options, note_model
from honed.errors import ConfigError, HonedError, ModelRequestBlocked, find_cause
from honed.programs import fit_problem, refuse_unfit_inputs
from honed.programs.loaders import MAX_LINE_BYTES, capped_lines

EPILOG = """examples:
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


def register(commands: Any) -> None:
    run = commands.add_parser("run", help="run a saved artifact on inputs, printing JSON",
                              formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    run.add_argument("artifact", help="artifact file written by honed.save or honed compile")
    given = run.add_mutually_exclusive_group(required=True)
    given.add_argument("--input", type=_json_object, metavar="JSON", help="one input object")
    given.add_argument("--inputs", metavar="FILE.jsonl", help="one input object per line ('-' reads stdin)")
    allow_class_option(run)
    run.add_argument("--key-env", metavar="VAR",
                     help="refuse the artifact unless it is signed with the key in environment variable VAR "
                          "(default: $HONED_ARTIFACT_KEY when set)")
    model_options(run)
    run.set_defaults(handler=handle)


def handle(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    program, saved_under = load_artifact(args)
    fields = input_fields(program)
    if args.input is not None:
        inputs, problem = _pick_inputs(args.input, fields)
        if problem:
            raise ConfigError(f"--input: {problem}")
        settings = configure_from(args)
        if problem := fit_problem(inputs, settings.lm):
            raise ConfigError(f"--input: {problem}")
        check_program(program)
        note_model(args, saved_under, settings.lm.model)
        try:
            outputs = _run_one(program, inputs)
        except Exception as exc:
            raise HonedError(f"the program failed: {_failure(exc)}") from exc
        print(json.dumps(outputs, ensure_ascii=False))
        return 0

    where = "<stdin>" if args.inputs == "-" else args.inputs
    jobs: list[tuple[dict[str, Any] | None, str | None]] = []
    for number, line in _read_input_lines(args.inputs):
        if line is None:
            jobs.append((None, f"{where}:{number}: longer than {MAX_LINE_BYTES:,} bytes; shorten the line (or raise "
                               "HONED_MAX_LINE_BYTES)"))
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            jobs.append((None, f"{where}:{number}: not valid JSON ({exc.msg} at column {exc.colno})"))
            continue
        inputs, problem = _pick_inputs(row, fields)
        jobs.append((inputs, f"{where}:{number}: {problem}" if problem else f"{where}:{number}"))
    settings = configure_from(args)
    jobs = refuse_unfit_inputs(jobs, settings.lm)  # inputs too long for the model's context fail before any runs
    check_program(program)
    note_model(args, saved_under, settings.lm.model)

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


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"text\": \"...\"}}', got {text!r}")
    return value


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


def _read_input_lines(where: str) -> list[tuple[int, str | None]]:
    """The non-blank lines of `--inputs` (a file, or `-` for stdin) as (line number, text), read a line at a
    time with the dataset loaders' cap (`HONED_MAX_LINE_BYTES`): a longer line is (number, None), that line's
    error, and never held in memory whole."""
    try:
        if where == "-":
            return _lines(where, sys.stdin.buffer)
        with Path(where).open("rb") as handle:
            return _lines(where, handle)
    except FileNotFoundError:
        raise ConfigError(f"{where}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{where}: cannot be read: {exc.strerror or exc}") from None


def _lines(where: str, handle: BinaryIO) -> list[tuple[int, str | None]]:
    lines: list[tuple[int, str | None]] = []
    # Split on \n only: str.splitlines would also split inside a JSON string holding U+2028 or U+0085.
    for number, chunk in enumerate(capped_lines(handle, MAX_LINE_BYTES), start=1):
        if chunk is None:
            lines.append((number, None))
            continue
        try:
            text = chunk.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{where}:{number}: not UTF-8 text (byte {exc.start} of the line)") from None
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark from a Windows editor
        text = text.removesuffix("\n").removesuffix("\r")
        if text.strip():
            lines.append((number, text))
    return lines
