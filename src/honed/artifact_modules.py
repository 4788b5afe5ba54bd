"""Where a program's predictors live, and DSPy's own modules rebuilt from their stored signatures.

`predictor_slots` names predictors exactly as DSPy's `named_predictors` does (`self`, `predict`,
`steps[0]`, `by_label['positive']`, `draft.predict`) but also looks inside sub-modules that a DSPy
optimizer marked compiled, which `named_predictors` skips: an artifact of a pipeline built from a
compiled part must still carry that part's prompts. Each slot knows its owner, so a loaded predictor
can be replaced in place (a list item as well as an attribute).

`BUILTINS` are the program classes an artifact can rebuild without any user code: `dspy.Predict`,
`dspy.ChainOfThought` and `honed.Behave`. Their `init_args` are `{"config": {...}}` (the predictor's
keyword configuration, e.g. temperature) and their one predictor's stored signature rebuilds the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

from honed.artifact_json import plain
from honed.errors import ArtifactError
from honed.modules.behave import Behave


@dataclass
class Slot:
    """One predictor, its DSPy name, and the object (module, list or dict) that holds it."""

    name: str
    predictor: dspy.Predict
    owner: Any = None  # None: the predictor is the program itself
    key: str | int | None = None

    def replace(self, new: dspy.Predict) -> None:
        if self.owner is None:
            raise ValueError("the program itself cannot be replaced in place")
        if isinstance(self.owner, tuple):
            raise ValueError(f"`{self.name}` is in a tuple, which cannot change; hold predictors in a list")
        if isinstance(self.owner, list | dict):
            self.owner[self.key] = new  # type: ignore[index]
        else:
            setattr(self.owner, str(self.key), new)
        self.predictor = new


def predictor_slots(program: dspy.Module) -> list[Slot]:
    """Every predictor of `program`, in `named_predictors` order and naming, compiled parts included."""
    slots: list[Slot] = []
    seen: set[int] = set()

    def visit(name: str, value: Any, owner: Any, key: str | int) -> None:
        if isinstance(value, dspy.Predict):
            if id(value) not in seen:
                seen.add(id(value))
                slots.append(Slot(name, value, owner, key))
        elif isinstance(value, dspy.Module):
            walk(value, f"{name}.")

    def walk(module: dspy.Module, prefix: str) -> None:
        for name, value in list(module.__dict__.items()):
            if isinstance(value, list | tuple):
                for index, item in enumerate(value):
                    visit(f"{prefix}{name}[{index}]", item, value, index)
            elif isinstance(value, dict):
                for key, item in value.items():
                    visit(f"{prefix}{name}['{key}']", item, value, key)
            else:
                visit(f"{prefix}{name}", value, module, name)

    if isinstance(program, dspy.Predict):
        seen.add(id(program))
        slots.append(Slot("self", program))
    walk(program, "")
    return slots


def user_config(predictor: dspy.Predict, where: str, path: Any) -> dict[str, Any]:
    """The predictor's keyword configuration as JSON, without what `Behave` derives from its procedure."""
    config = dict(predictor.config)
    if isinstance(predictor, Behave) and not predictor._own_max_tokens:
        config.pop("max_tokens", None)
    return plain(config, f"{where} config", path)


@dataclass(frozen=True)
class Builtin:
    """A DSPy (or honed) module class rebuilt from data: its one predictor's name, and how to build it."""

    cls: type[dspy.Module]
    predictor: str
    make: Callable[[type[dspy.Signature], dict[str, Any]], dspy.Module]

    def init_args(self, program: dspy.Module, path: Any) -> dict[str, Any]:
        inner = program if self.predictor == "self" else getattr(program, self.predictor)
        return {"config": user_config(inner, f"predictor `{self.predictor}`", path)}

    def build(self, init_args: dict[str, Any], signatures: dict[str, type[dspy.Signature]], path: Any
              ) -> dspy.Module:
        name = f"{self.cls.__module__}:{self.cls.__qualname__}"
        if set(init_args) - {"config"} or not isinstance(init_args.get("config", {}), dict):
            raise ArtifactError(path, f"{name} takes init_args {{\"config\": {{...}}}} only, got "
                                      f"{', '.join(sorted(init_args)) or 'nothing'}")
        if set(signatures) != {self.predictor}:
            raise ArtifactError(path, f"a {self.cls.__name__} artifact stores exactly one predictor, "
                                      f"`{self.predictor}`; this one stores "
                                      f"{', '.join(f'`{n}`' for n in signatures) or 'none'}")
        try:
            return self.make(signatures[self.predictor], dict(init_args.get("config", {})))
        except (TypeError, ValueError) as exc:
            raise ArtifactError(path, f"cannot rebuild {name}: {type(exc).__name__}: {exc}".splitlines()[0]
                                ) from None


def _chain_of_thought(signature: type[dspy.Signature], config: dict[str, Any]) -> dspy.Module:
    """DSPy builds the module from the task signature (adding its `reasoning` field); then the stored
    signature, which holds that field as it was saved, replaces the one DSPy made."""
    task = signature.delete("reasoning") if "reasoning" in signature.output_fields else signature
    program = dspy.ChainOfThought(task, **config)
    program.predict.signature = signature
    return program


BUILTINS: dict[str, Builtin] = {
    f"{b.cls.__module__}:{b.cls.__qualname__}": b for b in (
        Builtin(dspy.Predict, "self", lambda signature, config: dspy.Predict(signature, **config)),
        Builtin(dspy.ChainOfThought, "predict", _chain_of_thought),
        Builtin(Behave, "self", lambda signature, config: Behave(signature, None, **config)),
    )
}


def builtin_for(program: dspy.Module) -> Builtin | None:
    """The builder for `program`'s exact class (a subclass is user code and needs registering)."""
    return BUILTINS.get(f"{type(program).__module__}:{type(program).__qualname__}")
