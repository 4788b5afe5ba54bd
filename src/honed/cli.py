"""The `honed` command line. `--json` prints one JSON object on stdout; errors print one line and exit 1.

Exit codes: 0 ok, 1 failure (with a one-line reason), 2 usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EPILOG = """examples:
  honed quickstart
  honed eval sentiment --limit 100 --json
  honed eval --train my.train.jsonl --test my.test.jsonl --model ollama_chat/llama3.2
  honed eval sentiment --model openai/my-model --api-base http://127.0.0.1:8000/v1 --typed-outputs llama.cpp
"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="litellm model string (default: $HONED_MODEL or gguf/smollm2-135m)")
    parser.add_argument("--api-base", help="endpoint for an OpenAI-compatible or other remote model")
    parser.add_argument("--typed-outputs", default="auto", choices=["auto", "json_schema", "llama.cpp", "off"],
                        help="how output schemas reach the model (default: auto)")
    parser.add_argument("--max-tokens", type=_positive_int, default=512, help="output token cap per call")
    parser.add_argument("--cache-dir", help="response cache directory (default: $HONED_CACHE_DIR or ~/.cache/honed)")
    parser.add_argument("--threads", type=_positive_int, help="parallel worker threads")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="honed", description="Compile and run typed DSPy programs.",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")

    quick = commands.add_parser("quickstart", help="evaluate the sentiment task on the embedded model",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  honed quickstart --limit 20")
    quick.add_argument("--limit", type=_positive_int, default=100, help="test examples to run (default 100)")
    _model_options(quick)

    ev = commands.add_parser("eval", help="evaluate a task's test split",
                             formatter_class=argparse.RawDescriptionHelpFormatter,
                             epilog="examples:\n  honed eval sentiment --limit 100 --json\n"
                                    "  honed eval --train a.train.jsonl --test a.test.jsonl --program transform")
    ev.add_argument("task", nargs="?", help="bundled task name (sentiment, first_word_letter, ...) or bbh/<name>")
    ev.add_argument("--train", help="training JSONL file (fields: input, output, optional answers)")
    ev.add_argument("--test", help="test JSONL file (same fields)")
    ev.add_argument("--program", choices=["classify", "transform"], help="override the program choice")
    ev.add_argument("--bbh-dir", help="folder of BIG-Bench Hard JSON files for bbh/<name> tasks")
    ev.add_argument("--limit", type=_positive_int, help="evaluate only the first N test examples")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    _model_options(ev)
    return parser


def _configure(args: argparse.Namespace) -> Any:
    import honed

    extra = {"api_base": args.api_base} if args.api_base else {}
    return honed.configure(model=args.model, cache_dir=args.cache_dir, typed_outputs=args.typed_outputs,
                           max_tokens=args.max_tokens, num_threads=args.threads, **extra)


def _task(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    from honed.programs import load_task, task_from_files

    if args.task and (args.train or args.test):
        parser.error("give either TASK or --train/--test, not both")
    if args.task:
        return load_task(args.task, program=args.program, bbh_dir=args.bbh_dir)
    if not (args.train and args.test):
        parser.error("give a TASK name, or both --train FILE and --test FILE")
    return task_from_files(args.train, args.test, program=args.program)


def cmd_eval(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from honed.evaluate import evaluate

    task = _task(args, parser)
    settings = _configure(args)
    examples = task.test[: args.limit] if args.limit else task.test
    report = evaluate(task.program(), examples, task.metric, progress=False if args.json else None)
    summary = {"task": task.name, "model": settings.lm.model, **report.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{task.name} on {settings.lm.model}: score {report.score:.3f} over {report.n} examples")
        print(f"  parse failures {report.parse_failures}, other errors {report.errors}")
        print(f"  model calls {report.lm_calls}, cache hits {report.cache_hits}, "
              f"tokens {report.prompt_tokens} in / {report.completion_tokens} out, {report.wall_s:.1f}s")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from honed.evaluate import evaluate
    from honed.programs import load_task

    task = load_task("sentiment")
    settings = _configure(args)
    examples = task.test[: args.limit]
    print(f"honed quickstart: the sentiment task on {settings.lm.model}")
    print(f"  instruction: {task.instructions}")
    print(f"  output type: {task.output_field} is one of {task.labels}, enforced while decoding")
    report = evaluate(task.program(), examples, task.metric)
    print("\n  a few answers:")
    for result in report.results[:5]:
        text = str(result.example[task.input_field])
        got = getattr(result.prediction, task.output_field, None) if result.prediction else result.error
        mark = "ok " if result.score else "xx "
        print(f"   {mark} {text[:60]!r:64} -> {got} (gold: {result.example[task.output_field]})")
    print(f"\n  accuracy {report.score:.2f} on {report.n} test examples; parse failures {report.parse_failures}")
    print(f"  model calls {report.lm_calls}, cache hits {report.cache_hits}, {report.wall_s:.1f}s")
    cache_dir = settings.cache_dir or "memory"
    print(f"  responses cached in {cache_dir}: run it again and it makes no model calls.")
    print("\n  next: honed eval first_word_letter --limit 50   (see `honed --help`)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from honed import __version__

        print(__version__)
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    from honed.errors import HonedError

    try:
        if args.command == "eval":
            return cmd_eval(args, parser)
        return cmd_quickstart(args)
    except HonedError as exc:
        print(f"honed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("honed: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
