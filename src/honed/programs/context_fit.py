"""Refuse, at load, the rows whose input cannot fit the target model's context, before any model work.

A row far longer than the model can read used to load, then fail on its first model call (after the model
had been asked to render and tokenize it, and counted as a call): a 50 MB row took 122 s and 6 GB. This
check runs once the target model is known and before anything is sent to it. For each row it counts the
input's tokens with the target's own tokenizer and refuses the data when

    input tokens + CONTEXT_RESERVE > the model's context size

naming the file, the line, the field, the row's token count and the context size, and what to do.

The reserve (`CONTEXT_RESERVE`, default 128 tokens, `$HONED_CONTEXT_RESERVE`) is the room the prompt's fixed
part and the answer need: the 32 answer tokens the `gguf/` provider insists on
(`honed.models.gguf.MIN_ANSWER_TOKENS`) plus 96 for the chat template, the field names and a short
instruction. On SmolLM2 the fixed part of honed's uncompiled prompts measured 26-66 tokens, so the check
leans a little towards refusing: a row within a few dozen tokens of the limit may be refused although a
minimal prompt would still have fitted it. The other way round, a row it lets through can still be too long
once a compiled program adds demonstrations and a procedure; that one fails on its own call with
`ContextLengthExceeded`, as before.

Where the context size and the tokens come from:

- `gguf/` models: the provider's `n_ctx` (`HONED_GGUF_N_CTX`, default 4096) and the model's own tokenizer
  (llama.cpp's `tokenize`: the model is loaded, as the first call would load it, but nothing is generated,
  no budget is charged and the cache is not asked).
- other litellm models: the context litellm's bundled model map records (`max_input_tokens`, else
  `max_tokens`; `litellm.get_max_tokens` is not used, as it gives the *output* limit) and
  `litellm.token_counter` (tiktoken's bundled encoding where the model's own tokenizer would have to be
  downloaded). A model the map does not know (a local server's `openai/my-model`, a fake) is not checked;
  one debug line on the `honed.programs` logger says so.

A row whose input is no longer in UTF-8 bytes than the room left is never tokenized (a token holds at least
one byte, and a sentencepiece tokenizer adds at most one for its leading space), so short data costs nothing
and does not even load the model.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import litellm

from honed.env_settings import env_int
from honed.errors import DatasetError
from honed.models.gguf import DEFAULT_N_CTX, MIN_ANSWER_TOKENS, GGUFProvider, register_gguf_provider
from honed.models.quiet import quiet_litellm
from honed.models.resolve import is_gguf_model, resolve_gguf_path
from honed.programs.loaders import Source, source_of

log = logging.getLogger("honed.programs")

# The chat template, the field names and a short instruction, at the least (see the module docstring).
PROMPT_FIXED_TOKENS = 96
CONTEXT_RESERVE = env_int("HONED_CONTEXT_RESERVE", PROMPT_FIXED_TOKENS + MIN_ANSWER_TOKENS, minimum=0)
# Tokenizers litellm would fetch from the Hugging Face hub (its `huggingface_tokenizer_kind`); the others it
# bundles. For these, tiktoken's bundled encoding counts instead: never a download.
_DOWNLOADED_TOKENIZERS = {"cohere", "llama2", "llama3"}


@dataclass(frozen=True)
class ContextWindow:
    """A model's context size and a way to count its tokens in a text.

    `count` may load the model (a `gguf/` one) the first time it is called; it never generates.
    """

    model: str
    n_ctx: int
    count: Callable[[str], int] = field(repr=False)
    hint: str = ""  # how to get a larger context, when there is a setting for it

    def room(self, reserve: int | None = None) -> int:
        """Tokens the input may take: the context less the reserve for the instructions and the answer."""
        return max(0, self.n_ctx - (CONTEXT_RESERVE if reserve is None else reserve))


def _installed_gguf_provider() -> GGUFProvider:
    """The provider litellm calls for `gguf/` models (a benchmark may have swapped in its own)."""
    for entry in litellm.custom_provider_map:
        handler = entry.get("custom_handler")
        if entry.get("provider") == "gguf" and isinstance(handler, GGUFProvider):
            return handler
    return register_gguf_provider()


def _gguf_window(model: str) -> ContextWindow:
    path = resolve_gguf_path(model)
    provider = _installed_gguf_provider()

    def count(text: str) -> int:
        loaded = provider.loaded(path)  # as the first call would: the weights load once per process
        with loaded.lock:
            return len(loaded.llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return ContextWindow(model, DEFAULT_N_CTX, count, "HONED_GGUF_N_CTX sets the context of gguf/ models")


def _catalog_entry(model: str) -> Mapping[str, Any] | None:
    """What litellm's bundled model map says about `model`, without asking any server (litellm's
    `get_model_info` asks an Ollama server, or the Hugging Face hub, for models of theirs)."""
    helper = getattr(litellm.utils, "get_model_info_helper", None)
    try:
        if helper is not None:
            with quiet_litellm():
                return helper(model=model, catalog_only=True)
    except TypeError:  # a litellm without `catalog_only`: the map itself
        pass
    except Exception:  # litellm: "This model isn't mapped yet"
        return None
    bare = model.split("/", 1)[1] if "/" in model else model
    return litellm.model_cost.get(model) or litellm.model_cost.get(bare)


def _remote_window(model: str) -> ContextWindow | None:
    info = _catalog_entry(model)
    n_ctx = (info or {}).get("max_input_tokens") or (info or {}).get("max_tokens")
    if not isinstance(n_ctx, int) or n_ctx <= 0:
        log.debug("honed: no context size known for %s; its rows are not checked against a context", model)
        return None
    custom = None
    kind_of = getattr(litellm.utils, "huggingface_tokenizer_kind", None)
    if kind_of is None or kind_of(model) in _DOWNLOADED_TOKENIZERS:
        custom = {"type": "openai_tokenizer", "tokenizer": _tiktoken()}

    def count(text: str) -> int:
        return int(litellm.token_counter(model=model, custom_tokenizer=custom, text=text))

    return ContextWindow(model, n_ctx, count)


def _tiktoken() -> Any:
    from litellm.litellm_core_utils.default_encoding import encoding  # bundled with litellm: never fetched

    return encoding


def context_window(target: Any) -> ContextWindow | None:
    """The context of `target` (a `dspy.LM`, a litellm model string, or a `ContextWindow` as it is), or None
    when it is not known (then nothing is checked)."""
    if isinstance(target, ContextWindow):
        return target
    model = target if isinstance(target, str) else getattr(target, "model", None)
    if not isinstance(model, str) or not model:
        log.debug("honed: %r names no model; its rows are not checked against a context", target)
        return None
    if is_gguf_model(model):
        return _gguf_window(model)
    try:
        return _remote_window(model)
    except Exception as exc:  # a litellm that changed its helpers: skip the check rather than refuse data
        log.debug("honed: cannot size the context of %s (%s); its rows are not checked", model, exc)
        return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _tokens(window: ContextWindow, values: Mapping[str, Any], room: int) -> dict[str, int] | None:
    """Each field's tokens, or None when the fields are too few bytes to exceed `room` (not tokenized)."""
    texts = {name: _text(value) for name, value in values.items()}
    if sum(len(text.encode("utf-8")) + 1 for text in texts.values()) <= room:
        return None
    return {name: window.count(text) for name, text in texts.items()}


def _advice(window: ContextWindow, reserve: int) -> str:
    hint = f" ({window.hint})" if window.hint else ""
    return (f"too long for {window.model}: its context holds {window.n_ctx:,} tokens, {reserve:,} of them kept for "
            f"the instructions and the answer, which leaves {window.room(reserve):,} for the input. Shorten the row "
            f"or drop it, or use a model with a larger context{hint}")


def fit_problem(inputs: Mapping[str, Any], target: Any, *, reserve: int | None = None) -> str | None:
    """Why these input fields cannot fit `target`'s context (one line), or None when they can or it is unknown.

    For inputs that come from somewhere other than a task file (`honed run --inputs`): the caller adds the
    file and line."""
    window = context_window(target)
    if window is None:
        return None
    reserve = CONTEXT_RESERVE if reserve is None else reserve
    counts = _tokens(window, inputs, window.room(reserve))
    if counts is None or sum(counts.values()) <= window.room(reserve):
        return None
    total = sum(counts.values())
    if len(counts) == 1:
        name = next(iter(counts))
        what = f"input field `{name}` is {total:,} tokens"
    else:
        parts = ", ".join(f"`{name}` {n:,}" for name, n in counts.items())
        what = f"input fields {parts} are {total:,} tokens together"
    return f"{what}, {_advice(window, reserve)}"


@dataclass(frozen=True)
class _Oversized:
    where: str  # "file:line" or "file, examples[3].input", or "example <id>"
    source: Source | None
    fields: dict[str, int]
    label: str


def _label(example: Any, index: int) -> str:
    ident = example.get("id") if hasattr(example, "get") else None
    return f"example {ident}" if ident else f"example {index}"


def _oversized(examples: Iterable[Any], window: ContextWindow, reserve: int) -> list[_Oversized]:
    room = window.room(reserve)
    found = []
    for index, example in enumerate(examples):
        source = source_of(example)
        try:
            inputs = example.inputs() if hasattr(example, "inputs") else example
        except ValueError:  # a dspy.Example without `with_inputs`: which fields are read is not known
            continue
        values = dict(inputs.items())
        counts = _tokens(window, values, room)
        if counts is None or sum(counts.values()) <= room:
            continue
        if source is not None and len(counts) == 1:  # a task file's row: name its field as the file does
            counts = {source.field: next(iter(counts.values()))}
        where = (f"{source.path}:{source.line}" if source is not None and source.line is not None
                 else source.path if source is not None else _label(example, index))
        found.append(_Oversized(where, source, counts, _label(example, index)))
    return found


def check_examples_fit(examples: Sequence[Any], target: Any, *, reserve: int | None = None) -> None:
    """Raise `DatasetError` if any example's input fields cannot fit `target`'s context.

    `target`: a `dspy.LM`, a litellm model string or a `ContextWindow`; an unknown context checks nothing.
    The error names the first such row by file, line and field (examples loaded from a task file know
    theirs), its token count, the context size and what to do, and counts the others.
    """
    window = context_window(target)
    if window is None:
        return
    reserve = CONTEXT_RESERVE if reserve is None else reserve
    found = _oversized(examples, window, reserve)
    if not found:
        return
    first = found[0]
    total = sum(first.fields.values())
    names = ", ".join(f"`{name}`" for name in first.fields)
    fields = next(iter(first.fields)) if len(first.fields) == 1 else None
    subject = "is" if fields else f"(input fields {names}) are"
    problem = f"{subject} {total:,} tokens, {_advice(window, reserve)}"
    if len(found) > 1:
        others = ", ".join(item.where for item in found[1:6]) + (", ..." if len(found) > 6 else "")
        problem += f". {len(found) - 1} more row(s) are too long as well: {others}"
    if first.source is not None:
        raise DatasetError(first.source.path, first.source.line, fields, problem)
    raise DatasetError(first.label, None, fields, problem)


def check_task_fits(task: Any, target: Any, *, reserve: int | None = None) -> None:
    """`check_examples_fit` over a task's training and test examples (the training rows first)."""
    check_examples_fit([*task.train, *task.test], target, reserve=reserve)


def refuse_unfit_inputs(jobs: Sequence[tuple[Mapping[str, Any] | None, str | None]], target: Any, *,
                        reserve: int | None = None) -> list[tuple[Mapping[str, Any] | None, str | None]]:
    """`honed run --inputs`'s jobs, `(inputs or None, "FILE:LINE" label)`, with every input that cannot fit
    `target`'s context turned into a failed job `(None, "FILE:LINE: why")`, before any of them runs."""
    window = context_window(target)
    if window is None:
        return list(jobs)
    checked: list[tuple[Mapping[str, Any] | None, str | None]] = []
    for inputs, label in jobs:
        problem = fit_problem(inputs, window, reserve=reserve) if inputs is not None else None
        checked.append((None, f"{label}: {problem}") if problem else (inputs, label))
    return checked
