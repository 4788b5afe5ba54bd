"""A compile the crash-safety and concurrency tests run in a child process, kill with SIGKILL, and rerun.

It compiles the films task (tests/films.py) with a deterministic scripted model into a run directory
and a cache directory, then saves the artifact with `honed.save`. Every real provider call appends a
`<attempt> call <digest>` line to a calls file before it is answered, and every answer that reached the
cache appends `<attempt> stored <digest>` after `dspy.cache.put` returned, so a test can tell a call
that was in flight at a kill (legitimately repeated later) from one whose answer had been stored
(never to be paid for again).

    python tests/crash_compile.py --optimizer reflective --cache-dir C --run-dir R --out A.json \\
        --calls calls.txt --attempt 1 [--threads 1] [--delay 0.003] [--start-after GO]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dspy  # noqa: E402
from films import data, program  # noqa: E402

import honed  # noqa: E402
from honed.testing import ScriptedLM, block_model_requests, trace_step_keys  # noqa: E402

GOOD_WORD = "careful"
FIXED_STEP = "Answer negative if the film is bad, else positive."


def answer(messages: list[dict[str, str]], schema: dict[str, Any] | None) -> Any:
    """Both optimizers' worlds in one script: the target model answers right only once its instruction
    (reflective) or procedure (behavior) carries the fix the optimizer model proposes."""
    props = (schema or {}).get("properties", {})
    system, last = messages[0]["content"], messages[-1]["content"]
    if "new_instruction" in props:  # ReflectiveRefine's ProposeFix
        return {"cause": "says positive for bad films", "explains": [1, 2],
                "new_instruction": "Be careful with negative words.", "show_examples": False}
    if list(props) == ["steps"] and "examples" in last and "task" in system:  # BehaviorOptimizer: draft
        return {"steps": ["Read the sentence.", "Answer positive."]}
    if "correct_answer" in last:  # BehaviorOptimizer: reference execution, its trace a list or keyed by step
        steps = props["steps"]
        keys = trace_step_keys(schema or {})
        count = len(keys) or steps["minItems"]
        done = (["Read the sentence.", "Answer the correct label."] + ["done"] * count)[:count]
        return {"steps": dict(zip(keys, done, strict=True)) if keys else done}
    if "action" in props:  # BehaviorOptimizer: fix the departing step
        return {"action": "rewrite", "new_step": FIXED_STEP, "second_step": ""}
    fixed = GOOD_WORD in system or FIXED_STEP in system
    label = "negative" if fixed and "bad" in last.split("\n")[-1] else "positive"
    if "steps" in props:
        count = props["steps"]["minItems"]
        return {"steps": ([last.strip()[:40], label] + ["ok"] * count)[:count], "sentiment": label}
    return {"sentiment": label}


class CallLog:
    """Appends `<attempt> <event> <digest>` lines; one `os.write` per line on an O_APPEND file, so lines
    from concurrent threads and processes never interleave and a SIGKILL cannot leave half a line."""

    def __init__(self, path: Path, attempt: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.attempt = attempt
        self.local = threading.local()

    def write(self, event: str, digest: str) -> None:
        os.write(self.fd, f"{self.attempt} {event} {digest}\n".encode())


def recording_lm(log: CallLog, delay: float) -> dspy.LM:
    """`ScriptedLM(answer)`, its engine wrapped to log each provider call (digest of the whole request)."""
    lm = ScriptedLM(answer)
    engine = lm.engine
    complete = engine.complete

    def logged(request: Any) -> Any:
        digest = hashlib.sha256(repr(request).encode()).hexdigest()[:20]
        log.write("call", digest)
        log.local.digest = digest
        time.sleep(delay)  # a provider takes time: a kill often lands while a call is in flight
        return complete(request)

    engine.complete = logged
    return lm


def log_stores(cache: Any, log: CallLog) -> None:
    """Log `stored <digest>` once `cache.put` returned (the answer is on disk: DSPy writes synchronously)."""
    put = cache.put

    def logged_put(*args: Any, **kwargs: Any) -> None:
        put(*args, **kwargs)
        digest = getattr(log.local, "digest", None)
        if digest is not None:
            log.write("stored", digest)
            log.local.digest = None

    cache.put = logged_put


def optimizer_for(name: str, threads: int) -> Any:
    metric = honed.ExactMatch("sentiment")
    if name == "reflective":
        return honed.ReflectiveRefine(metric, budget=300, minibatch=8, max_rounds=3, seed=0, progress=False,
                                      num_threads=threads)
    return honed.BehaviorOptimizer(metric, budget=400, refinement_steps=2, minibatch=6, seed=0, progress=False,
                                   num_threads=threads)


def compile_and_save(optimizer: str, cache_dir: Path, run_dir: Path, out: Path, calls: Path, attempt: str,
                     threads: int = 1, delay: float = 0.0) -> dict[str, Any]:
    """Compile with the recording model and save; returns the artifact as written."""
    log = CallLog(calls, attempt)
    settings = honed.configure(model=recording_lm(log, delay), cache_dir=cache_dir, num_threads=threads)
    log_stores(settings.cache, log)
    teleprompter = optimizer_for(optimizer, threads)
    compiled = teleprompter.compile(program(), trainset=data(16), valset=data(8, offset=100), run_dir=run_dir)
    return honed.save(compiled, out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--optimizer", choices=["reflective", "behavior"], default="reflective")
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--calls", type=Path, required=True)
    parser.add_argument("--attempt", default="1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--start-after", type=Path, help="once imported, touch FILE.ATTEMPT.ready and wait until "
                                                        "FILE exists, so that processes start at the same moment")
    args = parser.parse_args(argv)
    if args.start_after is not None:
        args.start_after.with_name(f"{args.start_after.name}.{args.attempt}.ready").touch()
        deadline = time.monotonic() + 120
        while not args.start_after.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
    with block_model_requests():  # the scripted model only: never a real model, never the network
        compile_and_save(args.optimizer, args.cache_dir, args.run_dir, args.out, args.calls, args.attempt,
                         args.threads, args.delay)
    return 0


if __name__ == "__main__":
    sys.exit(main())
