"""Soak: thousands of cached and uncached calls through the thread pool; memory, errors and throughput.

A long-lived process (a server, a notebook, a compile of thousands of calls) must not leak: this runs the
sentiment program on `--uncached` distinct inputs (each one a real embedded-model call, so use a fresh
`--cache-dir`), then `--cached` more calls cycling over those inputs (all answered by the cache; the
memory tier is emptied first so the disk tier serves the first pass), all through `honed.evaluate`'s
thread pool. It samples the process's resident memory (VmRSS) as it goes and counts errors and
throughput per phase. What may legitimately grow is bounded: DSPy's in-memory LRU cache (entries, see
`bounds`) and its call history (10,000 entries per LM and globally); `growth_after_history_full_mb` is
the RSS change over the calls made once that history is full (the default run makes 11,000 calls).

Writes `soak.json` (every number and the memory samples) and `soak.md` (a table) to `--out-dir`.

    python benchmarks/soak.py                                 # 1,000 uncached + 10,000 cached calls
    python benchmarks/soak.py --cached 500 --uncached 20 --threads 4 --cache-dir /tmp/soak-small
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402
from dspy.clients import base_lm  # noqa: E402

import honed  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
POSITIVE = ["warm", "funny", "moving", "clever", "beautiful", "gripping", "charming", "tender"]
NEGATIVE = ["dull", "slow", "clumsy", "tedious", "shallow", "noisy", "lifeless", "muddled"]
SUBJECTS = ["a family drama", "a heist", "a road movie", "a ghost story", "a courtroom film", "a musical"]


def rss_mb() -> float:
    """Resident memory now (Linux /proc; elsewhere the peak from getrusage, the best available)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inputs(n: int) -> list[dspy.Example]:
    """`n` distinct review sentences (a counter makes each unique), labelled by the adjective's polarity."""
    out = []
    for i in range(n):
        positive = i % 2 == 0
        words = POSITIVE if positive else NEGATIVE
        sentence = f"Review {i}: {SUBJECTS[i % len(SUBJECTS)]}, {words[(i // 2) % len(words)]} from start to end."
        out.append(dspy.Example(sentence=sentence, sentiment="positive" if positive else "negative")
                   .with_inputs("sentence"))
    return out


class Sampler:
    """Samples RSS every `every` seconds on a daemon thread, plus an explicit sample after each chunk."""

    def __init__(self, every: float = 0.5) -> None:
        self.started = time.perf_counter()
        self.samples: list[dict[str, Any]] = []
        self.phase = "start"
        self.calls_done = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, args=(every,), daemon=True)

    def sample(self) -> float:
        value = rss_mb()
        with self._lock:
            self.samples.append({"t": round(time.perf_counter() - self.started, 2), "phase": self.phase,
                                 "calls_done": self.calls_done, "rss_mb": round(value, 1)})
        return value

    def _run(self, every: float) -> None:
        while not self._stop.wait(every):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def run_phase(name: str, program: dspy.Module, examples: list[dspy.Example], threads: int, chunks: int,
              sampler: Sampler) -> dict[str, Any]:
    """Evaluate `examples` in `chunks` pieces (an RSS sample after each) and total what happened."""
    metric = honed.ExactMatch("sentiment")
    sampler.phase = name
    size = max(threads, -(-len(examples) // max(1, chunks)))
    totals = {"calls": 0, "lm_calls": 0, "cache_hits": 0, "errors": 0, "parse_failures": 0, "crashes": 0,
              "correct": 0.0}
    first_error = None
    rss_start = sampler.sample()
    started = time.perf_counter()
    for begin in range(0, len(examples), size):
        chunk = examples[begin: begin + size]
        try:
            report = honed.evaluate(program, chunk, metric, num_threads=threads, progress=False)
        except Exception as exc:  # the pool itself failed: count the chunk as errors and go on
            totals["crashes"] += 1
            totals["errors"] += len(chunk)
            first_error = first_error or f"{type(exc).__name__}: {exc}"
        else:
            totals["lm_calls"] += report.lm_calls
            totals["cache_hits"] += report.cache_hits
            totals["errors"] += report.errors
            totals["parse_failures"] += report.parse_failures
            totals["correct"] += report.score * report.n
            failed = next((r.error for r in report.results if r.error), None)
            first_error = first_error or failed
        totals["calls"] += len(chunk)
        sampler.calls_done += len(chunk)
        sampler.sample()
    wall = time.perf_counter() - started
    rss = [s["rss_mb"] for s in sampler.samples if s["phase"] == name]
    return {**{k: v for k, v in totals.items() if k != "correct"},
            "accuracy": round(totals["correct"] / totals["calls"], 4) if totals["calls"] else None,
            "wall_s": round(wall, 2), "calls_per_s": round(totals["calls"] / wall, 2) if wall else None,
            "rss_mb_start": round(rss_start, 1), "rss_mb_peak": max(rss, default=rss_start),
            "rss_mb_end": rss[-1] if rss else round(rss_start, 1), "first_error": first_error}


def tail_growth(samples: list[dict[str, Any]], phase: str) -> float | None:
    """RSS growth (MB) over the second half of a phase's calls: ~0 once every bounded structure is full."""
    points = [s for s in samples if s["phase"] == phase]
    if len(points) < 4:
        return None
    half = points[-1]["calls_done"] - (points[-1]["calls_done"] - points[0]["calls_done"]) // 2
    later = [s for s in points if s["calls_done"] >= half]
    return round(later[-1]["rss_mb"] - later[0]["rss_mb"], 1)


def growth_after(samples: list[dict[str, Any]], calls: int) -> float | None:
    """RSS growth (MB) over the calls made after the first `calls` (None if the run never got that far)."""
    later = [s for s in samples if s["calls_done"] >= calls and s["phase"] != "start"]
    if not later or later[-1]["calls_done"] == later[0]["calls_done"]:
        return None
    return round(later[-1]["rss_mb"] - later[0]["rss_mb"], 1)


def markdown(result: dict[str, Any]) -> str:
    rows = ["| phase | calls | provider calls | cache hits | errors | parse failures | wall s | calls/s "
            "| RSS start MB | RSS peak MB | RSS end MB |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, p in result["phases"].items():
        rows.append(f"| {name} | {p['calls']} | {p['lm_calls']} | {p['cache_hits']} | {p['errors']} | "
                    f"{p['parse_failures']} | {p['wall_s']} | {p['calls_per_s']} | {p['rss_mb_start']} | "
                    f"{p['rss_mb_peak']} | {p['rss_mb_end']} |")
    t, b = result["totals"], result["bounds"]
    return "\n".join([
        f"# Soak: {result['model']}, {result['threads']} threads",
        "",
        f"{result['started_at']}, {result['machine']['cpus']} CPUs, Python {result['machine']['python']}; "
        f"`python benchmarks/soak.py --cached {result['phases']['cached']['calls']} "
        f"--uncached {result['phases']['uncached']['calls']} --threads {result['threads']}`.",
        "",
        *rows,
        "",
        f"Process RSS: {t['rss_mb_start']} MB before the first call, peak {t['rss_mb_peak']} MB, "
        f"{t['rss_mb_end']} MB at the end; growth over the second half of the cached phase: "
        f"{t['cached_tail_growth_mb']} MB; after DSPy's call history was full (call {b['history_cap']}): "
        f"{t['growth_after_history_full_mb']} MB. Errors: {t['errors']} of {t['calls']} calls.",
        "",
        f"Bounded by design: the in-memory cache held {b['memory_cache_entries']} entries (limit "
        f"{b['memory_cache_max_entries']}); DSPy's call history held {b['lm_history']} entries on the LM and "
        f"{b['global_history']} globally (limit {b['history_cap']} each).",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--cached", type=int, default=10_000, help="calls answered by the cache (default 10000)")
    parser.add_argument("--uncached", type=int, default=1_000, help="distinct real model calls (default 1000)")
    parser.add_argument("--threads", type=int, default=8, help="thread-pool size (default 8)")
    parser.add_argument("--cache-dir", type=Path, help="response cache (default: a fresh temporary directory)")
    parser.add_argument("--model", default="gguf/smollm2-135m")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=20, help="memory samples per phase, besides the timed ones")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.uncached < 1 or args.cached < 0 or args.threads < 1:
        parser.error("--uncached and --threads must be at least 1, --cached at least 0")

    cache_dir = args.cache_dir or Path(tempfile.mkdtemp(prefix="honed-soak-"))
    settings = honed.configure(model=args.model, cache_dir=cache_dir, max_tokens=args.max_tokens)
    program = honed.load_task("sentiment").program()
    fresh = inputs(args.uncached)
    repeated = [fresh[i % len(fresh)] for i in range(args.cached)]
    started_at = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    with Sampler() as sampler:
        rss_start = sampler.samples[0]["rss_mb"]
        uncached = run_phase("uncached", program, fresh, args.threads, args.chunks, sampler)
        settings.cache.reset_memory_cache()  # the first cached pass is served by the disk tier
        cached = run_phase("cached", program, repeated, args.threads, args.chunks, sampler)
    cache = settings.cache
    history_cap = min(base_lm.MAX_HISTORY_SIZE, dspy.settings.max_history_size)
    result = {
        "benchmark": "soak", "started_at": started_at, "model": args.model, "threads": args.threads,
        "max_tokens": args.max_tokens, "cache_dir": str(cache_dir),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "phases": {"uncached": uncached, "cached": cached},
        "totals": {
            "calls": uncached["calls"] + cached["calls"], "errors": uncached["errors"] + cached["errors"],
            "rss_mb_start": rss_start, "rss_mb_peak": max(s["rss_mb"] for s in sampler.samples),
            "rss_mb_end": sampler.samples[-1]["rss_mb"],
            "cached_tail_growth_mb": tail_growth(sampler.samples, "cached"),
            "growth_after_history_full_mb": growth_after(sampler.samples, history_cap),
        },
        "bounds": {
            "memory_cache_entries": len(cache.memory_cache),
            "memory_cache_max_entries": getattr(cache.memory_cache, "maxsize", None),
            "lm_history": len(settings.lm.history), "global_history": len(base_lm.GLOBAL_HISTORY),
            "history_cap": history_cap,
        },
        "samples": sampler.samples,
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "soak.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    (args.out_dir / "soak.md").write_text(markdown(result), encoding="utf-8")
    print(markdown(result))
    return 0 if result["totals"]["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
