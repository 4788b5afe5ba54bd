"""The options several `honed` commands share, and how a command reads them, in one place below the commands.

`honed.cli.main` builds the parser from the command modules, and each of them adds its options from here,
so no command module imports `honed.cli.main` or another command's module.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from honed.artifact import load, verify
from honed.artifact_signing import env_key
from honed.config import configure
from honed.errors import ConfigError
from honed.programs import load_task, task_from_files


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


def executor_options(parser: argparse.ArgumentParser) -> None:
    """`--executor ray [--workers N] [--ray-address ADDR]`: where `gguf/` generations run (the cache and the
    budget stay in this process either way)."""
    parser.add_argument("--executor", choices=["threads", "ray"], default="threads",
                        help="threads: the embedded model runs in this process (default); ray: each uncached "
                             "generation runs on a Ray actor (pip install 'honed[ray]')")
    parser.add_argument("--workers", type=positive_int,
                        help="Ray actors, each with its own copy of the model (default: one per cluster CPU)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="Ray cluster to join (HOST:PORT from `ray start --head`, ray://HOST:10001, auto); "
                             "default: a local Ray for this process")


def task_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", nargs="?", help="bundled task name (sentiment, first_word_letter, ...) or bbh/<name>")
    parser.add_argument("--train", help="training JSONL file (fields: input, output, optional answers)")
    parser.add_argument("--test", help="test JSONL file (same fields)")
    parser.add_argument("--program", choices=["classify", "transform", "pipeline"],
                        help="override the program: one predictor (classify/transform) or reason -> answer (pipeline)")
    parser.add_argument("--bbh-dir", help="folder of BIG-Bench Hard JSON files for bbh/<name> tasks")


def allow_class_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--allow-class", action="append", default=[], metavar="MODULE:CLASS",
                        help="trust this program class when loading the artifact (repeatable); honed's own "
                             "programs are always trusted")


def configure_from(args: argparse.Namespace) -> Any:
    """Configure honed from `model_options` (and `--optimizer-model`, `executor_options` where a command has them)."""
    extra = {"api_base": args.api_base} if args.api_base else {}
    return configure(model=args.model, optimizer_model=getattr(args, "optimizer_model", None),
                     cache_dir=args.cache_dir, typed_outputs=args.typed_outputs,
                     max_tokens=args.max_tokens, num_threads=args.threads,
                     executor=getattr(args, "executor", "threads"), ray_address=getattr(args, "ray_address", None),
                     workers=getattr(args, "workers", None), **extra)


def task_from(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Any:
    """The task `task_options` name; a wrong combination is a usage error of `parser` (the top-level one)."""
    if args.task and (args.train or args.test):
        parser.error("give either TASK or --train/--test, not both")
    if args.task:
        return load_task(args.task, program=args.program, bbh_dir=args.bbh_dir)
    if not (args.train and args.test):
        parser.error("give a TASK name, or both --train FILE and --test FILE")
    return task_from_files(args.train, args.test, program=args.program)


def check_out(out: str) -> None:
    """Refuse an `--out` that cannot be written *before* the compile spends its budget, not after."""
    target = Path(out).expanduser()
    if target.is_dir():
        raise ConfigError(f"--out {out} is a directory; give the artifact's file name, e.g. {target / 'program.json'}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot create its folder ({exc.strerror or exc}); choose another path"
                          ) from None
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"--out {out}: not writable; choose another path")


def load_artifact(args: argparse.Namespace) -> tuple[Any, str | None]:
    """The program in `args.artifact` (checked against `--allow-class` and `--key-env`), and the task model
    it was saved under."""
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


def input_fields(program: Any) -> list[str]:
    """What a program reads: its `input_fields` attribute if it declares one, else its first predictor's inputs."""
    declared = getattr(program, "input_fields", None)
    if isinstance(declared, list | tuple) and all(isinstance(name, str) for name in declared):
        return list(declared)
    predictors = program.named_predictors()
    return list(predictors[0][1].signature.input_fields) if predictors else []


def note_model(args: argparse.Namespace, saved_under: str | None, running_on: str) -> None:
    """Say so when an artifact runs on another model than it was saved under, unless `--model` chose it."""
    if args.model is None and saved_under and saved_under != running_on:
        print(f"honed: note: the artifact was saved under {saved_under}; running on {running_on} "
              "(pass --model to choose)", file=sys.stderr)
