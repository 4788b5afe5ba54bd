"""The `gguf/` provider single-stream against batched, side by side in one process on the same inputs.

Why: the batched decode loop (`honed.models.batching`, `HONED_GGUF_BATCH=1`) is only worth turning on if it
is faster on the workloads honed runs and gives the same answers. Each workload runs first on a provider
that decodes one request at a time (today's path) and then on one that decodes concurrent requests together,
through the whole stack (a DSPy program, honed's adapter, litellm, the provider), with DSPy's threads and no
response cache, so every example is a real model call:

- `classify`: the sentiment program on the 135M, one short typed answer per example;
- `behavior`: a behavior program (a `Behave` predictor with a fixed four-step procedure) on
  first_word_letter with the 135M: the model writes every step before its answer;
- `optimizer`: reflection calls of the 1.5B optimizer model (`--optimizer-model`): a long prompt of
  examples and feedback, a paragraph of new instructions.

For each: wall time, seconds per example, prompt and generated tokens per second, the speedup, how many
answers (and raw response texts) are equal, the prompt tokens the batched loop served from its KV cache, and
`x_floor`: the single-stream *floor* time for the same tokens (measured prompt and generation rates of raw
llama.cpp on this machine, no prefix reuse, no framework) divided by the wall time, i.e. above 1 is faster
than a single stream can go.

    python benchmarks/provider_speed.py                               # every workload, 100 examples each
    python benchmarks/provider_speed.py --limit 30 --json             # {"classify": {"speedup": ...}, ...}
    python benchmarks/provider_speed.py --workloads classify --limit 40 --threads 4
    python benchmarks/provider_speed.py --limit 40 --optimizer-limit 4 --optimizer-tokens 48   # what a loaded
                                                                          # 2-core machine ran in ~5 minutes

Writes `provider_speed.json` and `provider_speed.md` to `--out-dir` (default `benchmarks/results/`).
`HONED_GGUF_THREADS` sets llama.cpp's threads (default: every core); on a machine shared with other work,
fewer threads than cores can be much faster for both providers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import dspy  # noqa: E402

import honed  # noqa: E402
from honed.models.batching import LlamaBackend  # noqa: E402
from honed.models.gguf import GGUFProvider, install_gguf_provider, register_gguf_provider  # noqa: E402
from honed.models.resolve import resolve_gguf_path  # noqa: E402
from honed.modules.behave import Behave  # noqa: E402
from honed.modules.procedure import Procedure  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = ("classify", "behavior", "optimizer")
TARGET = "gguf/smollm2-135m"
BEHAVIOR_STEPS = [
    "Read the word and write it out exactly.",
    "Find the first character of the word.",
    "Check that the character is a letter of the alphabet.",
    "Write that letter in lower case as the answer.",
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help=f"comma-separated, from {', '.join(WORKLOADS)}")
    parser.add_argument("--limit", type=int, default=100, help="examples per classify and behavior workload")
    parser.add_argument("--optimizer-limit", type=int, default=20, help="reflection calls (at most 20)")
    parser.add_argument("--threads", type=int, default=16, help="DSPy threads sending requests")
    parser.add_argument("--batch-seqs", type=int, default=16, help="sequences the batched loop decodes at once")
    parser.add_argument("--model", default=TARGET)
    parser.add_argument("--optimizer-model", default="gguf/qwen2.5-coder-1.5b")
    parser.add_argument("--optimizer-tokens", type=int, default=160, help="max_tokens of a reflection call")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--json", action="store_true", help="print only the speedups, as one JSON object")
    args = parser.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(args.workloads) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown workloads: {', '.join(unknown)}")
    return args


# ------------------------------------------------------------------------------------------- workloads


def classify_workload(limit: int) -> tuple[dspy.Module, list[dspy.Example], Callable, int]:
    task = honed.load_task("sentiment")
    return task.program(), list(task.test[:limit]), task.metric, 64


def behavior_workload(limit: int) -> tuple[dspy.Module, list[dspy.Example], Callable, int]:
    task = honed.load_task("first_word_letter")
    predictor = task.program().predict
    program = Behave(predictor.signature, Procedure.from_texts(BEHAVIOR_STEPS))
    return program, list(task.test[:limit]), task.metric, 0  # 0: Behave sets its own max_tokens


class Reflect(dspy.Signature):
    """You improve the instructions of a language-model program. Read the current instructions and the
    examples with the program's answers and the feedback on them, then write better instructions."""

    current_instructions: str = dspy.InputField()
    examples_with_feedback: str = dspy.InputField()
    improved_instructions: str = dspy.OutputField(desc="the new instructions, one paragraph")


def optimizer_workload(limit: int, max_tokens: int = 160) -> tuple[dspy.Module, list[dspy.Example], Callable, int]:
    """Reflection calls like the optimizers' own: each shows a different slice of labelled examples."""
    task = honed.load_task("first_word_letter")
    rows = list(task.train)
    examples = []
    for i in range(min(limit, 20)):
        shown = rows[(i * 5) % max(1, len(rows) - 8):][:8]
        lines = [f"- word: {e.word} | program answered: {e.word[-1:]} | expected: {e.letter} | "
                 f"feedback: {'correct' if e.word[-1:] == e.letter else 'wrong, look at the first letter'}"
                 for e in shown]
        examples.append(dspy.Example(current_instructions=task.instructions,
                                     examples_with_feedback="\n".join(lines)).with_inputs(
            "current_instructions", "examples_with_feedback"))

    def metric(example: dspy.Example, prediction: dspy.Prediction, trace: Any = None) -> float:
        return float(bool(getattr(prediction, "improved_instructions", "").strip()))

    return dspy.Predict(Reflect), examples, metric, max_tokens


BUILDERS = {"classify": classify_workload, "behavior": behavior_workload, "optimizer": optimizer_workload}


# ------------------------------------------------------------------------------------------- measuring


class Recorder:
    """Wraps a provider's `completion` to keep each request's response texts (to compare the two providers)."""

    def __init__(self, provider: GGUFProvider) -> None:
        self.provider = provider
        self.texts: dict[str, list[str]] = {}
        inner = provider.completion

        def completion(model: str, messages: list, *args: Any, **kwargs: Any) -> Any:
            response = inner(model, messages, *args, **kwargs)
            key = json.dumps([model, messages], sort_keys=True, default=str)
            self.texts[key] = [choice.message.content for choice in response.choices]
            return response

        provider.completion = completion  # type: ignore[method-assign]


def floor_rates(provider: GGUFProvider, model: str) -> dict[str, float]:
    """Raw llama.cpp on this machine, one stream: prompt tokens/s (256 at once) and generated tokens/s."""
    loaded = provider.loaded(resolve_gguf_path(model))
    llama = loaded.llama
    with loaded.lock:
        text = " ".join(f"word{i} is here" for i in range(200)).encode()
        tokens = llama.tokenize(text, add_bos=True)[:256]
        llama.reset()
        started = time.perf_counter()
        llama.eval(tokens)
        prompt_tps = len(tokens) / (time.perf_counter() - started)
        started = time.perf_counter()
        for token in tokens[:24]:
            llama.eval([token])
        gen_tps = 24 / (time.perf_counter() - started)
        llama.reset()
    return {"prompt_tps": round(prompt_tps, 1), "gen_tps": round(gen_tps, 1)}


def decode_ceiling(provider: GGUFProvider, model: str, seqs: int, context: int = 128,
                   steps: int = 20) -> dict[str, Any]:
    """Raw llama.cpp decode steps of one token for each of 1, the model's exact width and `seqs` sequences
    (each `context` tokens in): generated tokens/s, and the ratio of the exact width's rate to one sequence's,
    the most that the batched loop (which decodes generated tokens in groups no wider) can gain on generated
    tokens on this machine. Each width gets one untimed step first.
    """
    loaded = provider.loaded(resolve_gguf_path(model))
    with loaded.lock:
        backend = LlamaBackend(loaded.llama, seqs)
        try:
            exact = backend.probe_exact_width()
            prompt = loaded.llama.tokenize(" ".join(f"word{i} is here" for i in range(100)).encode(),
                                           add_bos=True)[:context]
            for seq in range(seqs):
                backend.prefill(seq, prompt)
            rates = {}
            for width in sorted({1, exact, seqs}):
                for step in range(steps + 1):
                    if step == 1:
                        started = time.perf_counter()
                    backend.decode([prompt[-1]] * width, [len(prompt) + step] * width, list(range(width)),
                                   [True] * width)
                rates[width] = round(width * steps / (time.perf_counter() - started), 1)
                for seq in range(width):
                    backend.seq_rm(seq, len(prompt), -1)
        finally:
            backend.close()
    return {"seqs": seqs, "exact_width": exact, "context": len(prompt), "gen_tps_one": rates[1],
            "gen_tps_exact": rates[exact], "gen_tps_batched": rates[seqs], "ceiling": round(rates[exact] / rates[1], 2),
            "ceiling_inexact": round(rates[seqs] / rates[1], 2)}


def run_once(provider: GGUFProvider, model: str, program: dspy.Module, examples: list[dspy.Example],
             metric: Callable, max_tokens: int, threads: int) -> dict[str, Any]:
    install_gguf_provider(provider)
    options = {"max_tokens": max_tokens} if max_tokens else {}
    honed.configure(model=dspy.LM(model, cache=False, **options), cache=False)
    before = dict(provider.stats.__dict__)
    engines_before = provider.engine_stats()
    started = time.perf_counter()
    report = honed.evaluate(program, examples, metric, num_threads=threads, progress=False)
    wall = time.perf_counter() - started
    delta = {k: v - before[k] for k, v in provider.stats.__dict__.items()}
    row: dict[str, Any] = {
        "wall_s": round(wall, 2), "s_per_example": round(wall / max(1, len(examples)), 3),
        "score": round(report.score, 4), "errors": report.errors, "parse_failures": report.parse_failures,
        "calls": delta["calls"], "prompt_tokens": delta["prompt_tokens"],
        "completion_tokens": delta["completion_tokens"],
        "prompt_tps": round(delta["prompt_tokens"] / wall, 1), "gen_tps": round(delta["completion_tokens"] / wall, 1),
        "reused_prompt_tokens": delta["reused_prompt_tokens"],
    }
    engines = provider.engine_stats()
    for name, stats in engines.items():
        old = engines_before.get(name, {})
        levels = ("max_active", "exact_width")  # levels, not counters: copied as they are
        row["engine"] = {k: round(v - old.get(k, 0), 3) for k, v in stats.items() if k not in levels}
        row["engine"].update({k: stats[k] for k in levels})
    row["predictions"] = [r.prediction.toDict() if r.prediction is not None else None for r in report.results]
    return row


def compare(name: str, single: GGUFProvider, batched: GGUFProvider, recorders: dict[str, Recorder], model: str,
            floor: dict[str, float], args: argparse.Namespace) -> dict[str, Any]:
    if name == "optimizer":
        built = optimizer_workload(min(args.limit, args.optimizer_limit), args.optimizer_tokens)
    else:
        built = BUILDERS[name](args.limit)
    program, examples, metric, max_tokens = built
    threads = args.threads
    rows = {}
    for label, provider in (("single", single), ("batched", batched)):
        recorders[label].texts.clear()
        rows[label] = run_once(provider, model, program, examples, metric, max_tokens, threads)
    one, many = rows["single"], rows["batched"]
    floor_s = one["prompt_tokens"] / floor["prompt_tps"] + one["completion_tokens"] / floor["gen_tps"]
    for row in rows.values():
        row["floor_s"] = round(floor_s, 2)
        row["x_floor"] = round(floor_s / row["wall_s"], 3) if row["wall_s"] else None
    texts_single, texts_batched = recorders["single"].texts, recorders["batched"].texts
    keys = sorted(set(texts_single) & set(texts_batched))
    answers = [a == b for a, b in zip(one.pop("predictions"), many.pop("predictions"), strict=True)]
    return {
        "model": model, "n": len(examples), "single": one, "batched": many,
        "speedup": round(one["wall_s"] / many["wall_s"], 3) if many["wall_s"] else None,
        "answers_equal": sum(answers), "texts_equal": sum(texts_single[k] == texts_batched[k] for k in keys),
        "texts_compared": len(keys),
        "reused_share": round(many["reused_prompt_tokens"] / max(1, many["prompt_tokens"]), 3),
    }


def warm(provider: GGUFProvider, model: str) -> None:
    """Load the model (and compile a grammar) before any clock runs."""
    import litellm

    install_gguf_provider(provider)
    litellm.completion(model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=2, temperature=0,
                       response_format={"type": "json_object"})


# ------------------------------------------------------------------------------------------- reporting


def markdown(result: dict[str, Any]) -> str:
    env = result["environment"]
    lines = [
        "# Provider speed: single-stream vs batched decoding",
        "",
        f"{env['date']}, {env['cpus']} CPUs, llama.cpp threads {env['llama_threads']}, DSPy threads "
        f"{env['dspy_threads']}, batched sequences {env['batch_seqs']}; load average "
        f"{env['load_before']} before, {env['load_after']} after"
        + (" (the machine was shared with other work: numbers are noisy)" if env["loaded"] else "") + ".",
        "",
        "| workload | model | n | single s | batched s | speedup | s/example single / batched "
        "| gen tok/s single / batched | x floor single / batched | answers equal | texts equal | prompt reused |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in WORKLOADS:
        w = result.get(name)
        if not w:
            continue
        one, many = w["single"], w["batched"]
        lines.append(
            f"| {name} | {w['model']} | {w['n']} | {one['wall_s']} | {many['wall_s']} | {w['speedup']} "
            f"| {one['s_per_example']} / {many['s_per_example']} | {one['gen_tps']} / {many['gen_tps']} "
            f"| {one['x_floor']} / {many['x_floor']} | {w['answers_equal']}/{w['n']} "
            f"| {w['texts_equal']}/{w['texts_compared']} | {w['reused_share']:.0%} |")
    lines += ["", "speedup: single wall time / batched wall time. x floor: the time raw llama.cpp needs for the "
              "same prompt and generated tokens in one stream (no prefix reuse, no framework) / wall time. "
              "answers equal: parsed predictions; texts equal: raw response texts of the same requests. "
              "prompt reused: share of the batched run's prompt tokens served from its KV cache."]
    lines += ["", "Floor rates (raw llama.cpp, one stream): " + ", ".join(
        f"{model}: prompt {r['prompt_tps']} tok/s, generation {r['gen_tps']} tok/s"
        for model, r in result["floor"].items()) + ".", ""]
    lines += ["Decode ceiling (raw llama.cpp decode steps, one token per sequence, each sequence "
              "{context} tokens in): ".format(context=next(iter(result["decode_ceiling"].values()))["context"])
              + "; ".join(_ceiling_text(model, r) for model, r in result["decode_ceiling"].items()) + ".", ""]
    return "\n".join(lines)


def _ceiling_text(model: str, r: dict[str, Any]) -> str:
    if r["exact_width"] == r["seqs"]:
        return (f"{model}: 1 sequence {r['gen_tps_one']} tok/s, {r['seqs']} sequences (all decoding exactly as "
                f"one) {r['gen_tps_batched']} tok/s, so the batched loop can at most gain {r['ceiling']}x on "
                "generated tokens")
    return (f"{model}: 1 sequence {r['gen_tps_one']} tok/s, {r['exact_width']} (the most decoding exactly as one) "
            f"{r['gen_tps_exact']} tok/s, {r['seqs']} {r['gen_tps_batched']} tok/s, so the batched loop can at "
            f"most gain {r['ceiling']}x on generated tokens ({r['ceiling_inexact']}x without the exactness limit)")


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    single = GGUFProvider(batching=False)
    batched = GGUFProvider(batching=True, batch_seqs=args.batch_seqs)
    recorders = {"single": Recorder(single), "batched": Recorder(batched)}
    load_before = load_average()
    result: dict[str, Any] = {}
    floors: dict[str, dict[str, float]] = {}
    ceilings: dict[str, dict[str, Any]] = {}
    try:
        for name in args.workloads:
            model = args.optimizer_model if name == "optimizer" else args.model
            if model not in floors:
                warm(single, model)
                warm(batched, model)
                floors[model] = floor_rates(single, model)
                ceilings[model] = decode_ceiling(single, model, args.batch_seqs)
            result[name] = compare(name, single, batched, recorders, model, floors[model], args)
    finally:
        register_gguf_provider()
        single.close()
        batched.close()
    load_after = load_average()
    cpus = os.cpu_count() or 1
    result["floor"] = floors
    result["decode_ceiling"] = ceilings
    result["environment"] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "platform": platform.platform(), "cpus": cpus,
        "llama_threads": int(os.environ.get("HONED_GGUF_THREADS") or cpus), "dspy_threads": args.threads,
        "batch_seqs": args.batch_seqs, "limit": args.limit, "optimizer_limit": args.optimizer_limit,
        "optimizer_tokens": args.optimizer_tokens,
        "kv_unified": os.environ.get("HONED_GGUF_BATCH_UNIFIED", "0"),
        "load_before": load_before, "load_after": load_after,
        "loaded": (load_before or 0) > 0.5 * cpus,  # the run itself raises the load after it
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "provider_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "provider_speed.md").write_text(markdown(result))
    if args.json:
        print(json.dumps({name: {"speedup": result[name]["speedup"], "answers_equal": result[name]["answers_equal"],
                                 "n": result[name]["n"]} for name in args.workloads}))
    else:
        print(markdown(result))
    return result


if __name__ == "__main__":
    main()
