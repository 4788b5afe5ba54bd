"""The reflection optimizer's meta-signature: a structured claim about the target model's errors.

Every output is typed, so even a small optimizer model returns a claim that parses: which of the
shown mistakes it explains, what it thinks the cause is, the instruction it proposes, and whether the
cited examples should become demonstrations. The optimizer then tests the claim on those examples.
"""

from __future__ import annotations

from typing import Annotated

import dspy
import pydantic

# Length caps become part of the decoding grammar: a small model cannot ramble past them, so its
# claim always fits in the token budget and parses.
ShortText = Annotated[str, pydantic.StringConstraints(max_length=240)]
FewNumbers = Annotated[list[int], pydantic.Field(max_length=8)]


class ProposeFix(dspy.Signature):
    """You improve the instruction of a language-model task. Read the mistakes the model made, say what
    caused them, and write a better instruction that would make the model answer them correctly."""

    instruction: str = dspy.InputField(desc="the current instruction")
    mistakes: str = dspy.InputField(desc="numbered examples the model got wrong")
    cause: ShortText = dspy.OutputField(desc="what the wrong answers have in common")
    explains: FewNumbers = dspy.OutputField(desc="numbers of the mistakes this cause explains")
    new_instruction: ShortText = dspy.OutputField(desc="the improved instruction")
    show_examples: bool = dspy.OutputField(desc="whether to show these examples with their correct answers")
