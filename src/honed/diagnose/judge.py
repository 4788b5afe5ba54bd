"""An optional judge model for reflections: a second opinion beside the keyword test.

Keywords miss a paraphrase ("shouting" for upper case) and cannot tell naming a word from mentioning it
in passing; a judge model can, at the price of its own errors. Both verdicts are reported separately.
"""

from __future__ import annotations

import dspy

from honed.config import make_lm
from honed.errors import ModelRequestBlocked, find_cause


class NamesCause(dspy.Signature):
    """You check a prompt optimizer's reflection on a language model's mistakes. The mistakes have one known
    cause. Decide whether the reflection identifies that cause: it states it or clearly describes it, rather
    than giving a generic or different explanation. Quoted examples alone do not identify a cause."""

    cause: str = dspy.InputField(desc="the known cause of the mistakes")
    reflection: str = dspy.InputField(desc="what the optimizer wrote (quoted examples replaced by [example])")
    names_cause: bool = dspy.OutputField(desc="true if the reflection identifies the known cause")


class Judge:
    """Asks `model` (a litellm string or an LM) whether a reflection names a stated cause."""

    def __init__(self, model: str | dspy.BaseLM) -> None:
        self.lm = make_lm(model)
        self.model = getattr(self.lm, "model", str(model))
        self.calls = 0
        self.failures = 0

    def __call__(self, cause: str, reflection: str) -> bool | None:
        """The verdict, or None when the judge's call failed (counted in `failures`)."""
        self.calls += 1
        try:
            with dspy.context(lm=self.lm):
                verdict = dspy.Predict(NamesCause)(cause=cause, reflection=reflection)
        except Exception as exc:
            if find_cause(exc, ModelRequestBlocked):
                raise
            self.failures += 1
            return None
        return bool(verdict.names_cause)
