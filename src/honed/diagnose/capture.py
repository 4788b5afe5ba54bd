"""Capture what the optimizer model says during a compile, for any optimizer.

Every honed optimizer, and DSPy's through honed's wrapper, takes its reflecting model from
`honed.optimizer_lm()`. Installing a copy of that model, with a recording callback, as
`dspy.settings.honed_optimizer_lm` for the length of a compile therefore captures the optimizer's calls
and nothing else: the task model is a different object. A callback rather than the copy's `history`,
because DSPy's optimizers make copies of their prompt model (MIPROv2's rollouts, SIMBA's teacher) and a
copy starts with an empty history but keeps the callbacks.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import dspy
from dspy.utils.callback import BaseCallback

from honed.config import optimizer_lm

# Output fields of honed's own step-tracing predictor: a teacher running the task, not a reflection.
_TASK_EXTRA_FIELDS = frozenset({"steps", "reasoning"})


def texts_of(outputs: Any) -> list[str]:
    """The completion texts in whatever an LM call returned (strings, dicts with `text`, responses, lists)."""
    if outputs is None:
        return []
    if isinstance(outputs, str):
        return [outputs]
    if isinstance(outputs, dict):
        text = outputs.get("text")
        return [text] if isinstance(text, str) else []
    if isinstance(outputs, list | tuple):
        return [t for item in outputs for t in texts_of(item)]
    text = getattr(outputs, "text", None)
    return [text] if isinstance(text, str) else [str(outputs)]


def parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError, ValueError):
        return None


def prose_of(text: str) -> str:
    """The prose of a response: the string values of a JSON answer (keys and numbers dropped), else the text."""
    value = parsed(text)
    if not isinstance(value, dict | list):
        return text
    parts: list[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            parts.append(item)
        elif isinstance(item, dict):
            for sub in item.values():
                walk(sub)
        elif isinstance(item, list):
            for sub in item:
                walk(sub)

    walk(value)
    return "\n".join(parts)


@dataclass
class CapturedCall:
    number: int
    texts: list[str]


class OptimizerCapture(BaseCallback):
    """Records the output texts of every call made through the optimizer model (and its copies)."""

    def __init__(self) -> None:
        self.calls: list[CapturedCall] = []
        self.failed = 0
        self._lock = threading.Lock()

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        with self._lock:
            if exception is not None:
                self.failed += 1
                return
            self.calls.append(CapturedCall(len(self.calls) + 1, texts_of(outputs)))

    def reflections(self, task_output_fields: Iterable[str]) -> tuple[list[tuple[str, str]], int]:
        """(call label, prose) of each output that is not a task answer, and how many task answers there were.

        An output whose JSON keys are all output fields of the task program is the optimizer model acting as
        a teacher (bootstrapped demonstrations, reference executions), not reflecting on errors."""
        answer_keys = set(task_output_fields) | _TASK_EXTRA_FIELDS
        found: list[tuple[str, str]] = []
        answers = 0
        for call in self.calls:
            for index, text in enumerate(call.texts, start=1):
                value = parsed(text)
                if isinstance(value, dict) and value and set(value) <= answer_keys:
                    answers += 1
                    continue
                label = f"call {call.number}" + (f".{index}" if len(call.texts) > 1 else "")
                found.append((label, prose_of(text)))
        return found, answers


@contextlib.contextmanager
def capture_optimizer_model() -> Iterator[OptimizerCapture]:
    """While active, the optimizer model is a recording copy of `honed.optimizer_lm()`."""
    recorder = OptimizerCapture()
    model = optimizer_lm().copy()
    model.callbacks = [*(getattr(model, "callbacks", None) or []), recorder]
    with dspy.context(honed_optimizer_lm=model):
        yield recorder
