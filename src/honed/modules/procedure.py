"""The behavior a predictor is told to follow: an ordered list of explicit steps.

A `Procedure` renders into the predictor's instructions and round-trips through JSON, so a compiled
behavior can be read, reviewed and edited by a person.
"""

from __future__ import annotations

import pydantic

STEP_TEXT_LIMIT = 200


class Step(pydantic.BaseModel):
    """One behavior step: what to do, and what the step must produce."""

    model_config = pydantic.ConfigDict(frozen=True)

    id: str
    instruction: str = pydantic.Field(min_length=1)
    produces: str = ""


class Procedure(pydantic.BaseModel):
    """Ordered steps; `strict` adds the plain "follow the steps exactly" reminder (the no-demo ablation)."""

    model_config = pydantic.ConfigDict(frozen=True)

    steps: tuple[Step, ...] = pydantic.Field(min_length=1)
    strict: bool = False

    @pydantic.field_validator("steps")
    @classmethod
    def _unique_ids(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        ids = [step.id for step in steps]
        if len(set(ids)) != len(ids):
            raise ValueError(f"step ids must be unique, got {ids}")
        return steps

    @classmethod
    def from_texts(cls, instructions: list[str], produces: list[str] | None = None, strict: bool = False
                   ) -> Procedure:
        produces = produces or [""] * len(instructions)
        return cls(steps=tuple(Step(id=f"s{i}", instruction=text.strip(), produces=what.strip())
                               for i, (text, what) in enumerate(zip(instructions, produces, strict=False), start=1)),
                   strict=strict)

    def render(self) -> str:
        lines = ["Follow these steps. In `steps`, write what you produced at each step, in order."]
        for number, step in enumerate(self.steps, start=1):
            suffix = f" (produce: {step.produces})" if step.produces else ""
            lines.append(f"{number}. {step.instruction}{suffix}")
        if self.strict:
            lines.append("Follow the steps strictly, one by one, before giving the answer.")
        return "\n".join(lines)

    def index(self, step_id: str) -> int:
        return next(i for i, step in enumerate(self.steps) if step.id == step_id)

    def replace(self, step_id: str, new: list[Step]) -> Procedure:
        """A copy with one step replaced by `new` (one step to rewrite, two to split or add a check)."""
        at = self.index(step_id)
        return Procedure(steps=(*self.steps[:at], *new, *self.steps[at + 1:]), strict=self.strict)

    def fresh_id(self) -> str:
        taken = {step.id for step in self.steps}
        number = len(self.steps) + 1
        while f"s{number}" in taken:
            number += 1
        return f"s{number}"
