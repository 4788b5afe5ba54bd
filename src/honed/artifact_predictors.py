"""One predictor's stored state — signature, demos, procedure — as saved, and as written back on load.

    {"signature": {...artifact_signatures...}, "demos": [{"word": "mouse", "plural": "mice"}],
     "procedure": null | {"steps": [...], ...}}

`procedure` belongs to behavior programs: a predictor with `dump_procedure()` (honed's `Behave`) stores
its procedure there and its *task* signature (without the step trace the procedure implies); on load a
`Behave` gets the procedure back, and a plain `dspy.Predict` is replaced by a `Behave` over the same
signature, which is how a behavior compile left it. Every other predictor stores null.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dspy
import pydantic

from honed.artifact_json import plain
from honed.artifact_modules import Slot
from honed.artifact_signatures import SignatureSpec, check_fields, overlay, signature_state
from honed.errors import ArtifactError
from honed.modules import Behave, Procedure


class PredictorSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    signature: SignatureSpec
    demos: list[dict[str, Any]]
    procedure: dict[str, Any] | list[Any] | None


def describe_validation_error(exc: pydantic.ValidationError) -> str:
    """The first problem pydantic found, as `missing key `a.b`` or ``a.b`: message`."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    if first["type"] == "missing":
        return f"missing key `{where}`"
    return f"`{where}`: {first['msg']}"


def predictor_state(name: str, predictor: Any, path: Any) -> dict[str, Any]:
    """The JSON record of one predictor; refuses what JSON cannot hold, naming the predictor."""
    where = f"predictor `{name}`"
    if getattr(predictor, "fields", None):
        raise ArtifactError(path, f"{where} carries DSPy decision-field overrides, which artifacts do not store yet")
    demos = []
    for index, demo in enumerate(predictor.demos or []):
        if not isinstance(demo, dspy.Example | Mapping):
            raise ArtifactError(path, f"{where} demo {index} is a {type(demo).__name__}; demos must be "
                                      "dspy.Example or dict")
        demos.append(plain(dict(demo.items()), f"{where} demo {index}", path))
    procedure = None
    dump = getattr(predictor, "dump_procedure", None)
    if callable(dump):
        procedure = plain(dump(), f"{where} procedure", path)
    elif getattr(predictor, "procedure", None) is not None:
        raise ArtifactError(path, f"{where} has a procedure but no dump_procedure() to save it with")
    signature = getattr(predictor, "task_signature", predictor.signature)
    return {"signature": signature_state(signature, where, path), "demos": demos, "procedure": procedure}


def restore(program: dspy.Module, slot: Slot, state: PredictorSpec, *, rebuilt: bool, path: Any) -> dspy.Module:
    """Write `state` into the predictor at `slot`; returns the program (a new object only when the program
    itself is a Predict that becomes a Behave). `rebuilt`: its signature was already made from the file."""
    where = f"predictor `{slot.name}`"
    predictor = slot.predictor
    base = getattr(predictor, "task_signature", predictor.signature)
    if rebuilt:
        signature = base
    else:
        check_fields(where, base, state.signature.fields, path)
        signature = overlay(base, state.signature)
    inputs = list(signature.input_fields)
    demos = [dspy.Example(dict(demo)).with_inputs(*(k for k in inputs if k in demo)) for demo in state.demos]
    procedure = None
    if state.procedure is not None:
        try:
            procedure = Procedure.model_validate(state.procedure)
        except pydantic.ValidationError as exc:
            raise ArtifactError(path, f"{where} procedure is invalid: {describe_validation_error(exc)}") from None
    if isinstance(predictor, Behave):
        predictor.task_signature = signature
        predictor.set_procedure(procedure)
    elif procedure is not None:
        if type(predictor) is not dspy.Predict:
            raise ArtifactError(path, f"{where} stores a procedure, but its class {type(predictor).__name__} "
                                      "cannot follow one")
        behave = Behave(signature, procedure)
        if slot.owner is None:
            program = behave
        else:
            try:
                slot.replace(behave)
            except ValueError as exc:
                raise ArtifactError(path, f"{where} stores a procedure, but {exc}") from None
        predictor = behave
    else:
        predictor.signature = signature
    predictor.demos = demos
    return program
