"""The options several `honed` commands share (model, task, positive counts), in one place below them.

`honed.cli` builds the parser from the command modules (`cli_compile`, `cli_diagnose`, `cli_quickstart`),
and each of them adds its options from here, so no command module imports `honed.cli`.
"""

from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="litellm model string (default: $HONED_MODEL or gguf/smollm2-135m)")
    parser.add_argument("--api-base", help="endpoint for an OpenAI-compatible or other remote model")
    parser.add_argument("--typed-outputs", default="auto", choices=["auto", "json_schema", "llama.cpp", "off"],
                        help="how output schemas reach the model (default: auto)")
    parser.add_argument("--max-tokens", type=positive_int, default=512, help="output token cap per call")
    parser.add_argument("--cache-dir", help="response cache directory (default: $HONED_CACHE_DIR or ~/.cache/honed)")
    parser.add_argument("--threads", type=positive_int, help="parallel worker threads")


def task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="bundled task name (sentiment, first_word_letter, ...) or bbh/<name>")
    parser.add_argument("--train", help="training JSONL file (fields: input, output, optional answers)")
    parser.add_argument("--test", help="test JSONL file (same fields)")
    parser.add_argument("--program", choices=["classify", "transform", "pipeline"],
                        help="override the program: one predictor (classify/transform) or reason -> answer (pipeline)")
    parser.add_argument("--bbh-dir", help="folder of BIG-Bench Hard JSON files for bbh/<name> tasks")
