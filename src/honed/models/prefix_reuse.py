"""How much of a prompt's KV cache a `gguf/` model may reuse without its answer depending on what came before.

Why not simply the longest common prefix: llama.cpp's CPU kernels compute a row of a matrix product
differently depending on how many rows the decode carries. On the 2-core AVX-512 machine, the Q4_K_M
Qwen2.5-Coder-1.5B's last-token logits differed by up to 0.58 when the last 1, 2, 4 or 33 prompt tokens were
evaluated in a decode of their own instead of with the rest of the prompt (not for 8, 16 or 100), and the
Q4_1 SmolLM2-135M's when the last token of an 8-, 24- or 48-token prompt was (not of a 16-, 32- or
64-token one, nor at any cut of a 400-token one). Reusing the longest common prefix cut a prompt wherever
the previous prompt happened to end, so the same greedy request gave one answer as a process's first request
and another after a similar one: a benchmark's cached answers were samples of its process's history, and a
task compiled alone drafted another procedure than in a run of six.

So every prompt is evaluated in chunks at fixed places: `chunk` tokens each, from position 0 (the last one
shorter), and only whole chunks that were evaluated as *prompt* tokens are reused (generated tokens are
decoded one row at a time, and a partial last chunk is shorter than the same tokens inside a longer prompt).
Each prompt row is then computed as an evaluation from an empty cache computes it, whatever came before; a
reuse gives up fewer than `chunk` tokens of the common prefix.

Why not find out per model whether the cut matters: the 135M's 400-token prompt passed every cut tried, and
its failing cut is the very one a prompt asked twice takes (all but the last token reused). A probe cannot
show that no cut matters.
"""

from __future__ import annotations

from collections.abc import Sequence

# Tokens per prompt chunk (llama.cpp's n_batch and n_ubatch for `gguf/` models; `HONED_GGUF_N_BATCH`).
# Measured on 2 cores: 32-token chunks evaluate a prompt 12-24% slower than 512-token ones in a quiet
# measurement (1.5B: 82 against 93 tokens/s; 135M: 198 against 259; 64-token chunks: 85 and 234), but a reuse
# gives up 16 tokens on average instead of 256, and the 135M's short prompts gain more from that: a
# 100-example behavior program reused 79% of its prompt tokens in 32-token chunks, 58% in 64-token ones, and
# ran in 42 s against 56 s (`benchmarks/results/provider_speed_chunks/`).
DEFAULT_CHUNK = 32


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens `a` and `b` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def reusable_prefix(cached: Sequence[int], evaluated: int, prompt: Sequence[int], chunk: int) -> int:
    """How many leading tokens of `prompt` may be served from KV cells that hold `cached`, of which the first
    `evaluated` were evaluated as prompt tokens in chunks at multiples of `chunk`: the common prefix, within
    those, cut to whole chunks. The prompt's last token is always evaluated (its logits start the answer)."""
    shared = min(common_prefix(cached, prompt), evaluated, len(prompt) - 1)
    return max(0, shared) // chunk * chunk


def chunk_end(position: int, todo: int, chunk: int) -> int:
    """How many of `todo` prompt tokens (or of a decode's room for them) starting at `position` the next decode
    evaluates: up to the next multiple of `chunk`, so that every chunk sits where a fresh evaluation puts it."""
    return min(todo, chunk - position % chunk)
