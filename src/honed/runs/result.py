"""What every compile returns: `CompileResult`, typed, with one details record per kind of optimizer.

Why typed: each optimizer used to build its own summary dict, and callers probed its keys; "verification
rate" meant claims held for one optimizer, edits held for another and nothing for a third. Now the shared
facts (scores, calls, the gain test, why it stopped) are fields every result has, and what only one
optimizer knows lives in its own details class, told apart by `kind`.

`summary()` flattens a result into the JSON object artifacts record as provenance and `--json` prints,
spelled as before results were typed, so artifacts written then and now read alike.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["RESULT_SCHEMA_VERSION", "BehaviorDetails", "CompileResult", "DSPyDetails", "GainTest",
           "ReflectiveDetails"]

RESULT_SCHEMA_VERSION = 1


class GainTest(BaseModel):
    """The paired sign test of a candidate against the seed on the validation examples (and, when
    `held_out` > 0, that many held-out training examples too: `wins` and `losses` count both)."""

    model_config = ConfigDict(frozen=True)

    candidate: str
    val_score: float
    wins: int
    losses: int
    mean_gain: float
    p_value: float
    significance: float
    holds: bool
    held_out: int = 0


class ReflectiveDetails(BaseModel):
    """ReflectiveRefine: how many reflections (claims) it asked for, and how many held when verified."""

    kind: Literal["reflective"] = "reflective"
    claims: int = 0
    claims_held: int = 0


class BehaviorDetails(BaseModel):
    """BehaviorOptimizer: the procedure's history by refinement step, the target's per-step following
    rates, the step edits and how many held, and where the demonstrations came from."""

    kind: Literal["behavior"] = "behavior"
    demonstrations: bool = True
    step_scores: list[dict[str, Any]] = []
    following: dict[str, float] = {}
    edits: int = 0
    edits_held: int = 0
    demos_accepted: int = 0
    demos_rejected: int = 0
    demos_from_reference: int = 0


class DSPyDetails(BaseModel):
    """One of DSPy's optimizers: which, with what hyperparameters, what its own result scored on
    validation, and whether the seed was kept instead."""

    kind: Literal["dspy"] = "dspy"
    dspy_optimizer: str
    hyperparameters: dict[str, Any] = {}
    optimizer_val_score: float | None = None
    fell_back_to_seed: bool = False
    note: str | None = None
    final_eval_calls: int = 0


Details = Annotated[ReflectiveDetails | BehaviorDetails | DSPyDetails, Field(discriminator="kind")]


class CompileResult(BaseModel):
    """One finished compile, as its optimizer returns it (`optimizer.result`)."""

    schema_version: int = RESULT_SCHEMA_VERSION
    optimizer: str
    baseline_val_score: float  # the seed program on validation
    val_score: float  # the returned program on validation
    val_objective: str = "mean"  # what both validation scores are: "mean", or "balanced" over answer forms
    gain_over_seed: GainTest | None = None  # None: no candidate scored above the seed, or none was tested
    stop_reason: str
    budget: int
    budget_used: int  # distinct requests charged to the budget
    lm_calls: int  # provider calls (what no cache answered), both models
    cache_hits: int
    run_dir: str
    wall_s: float
    candidate: dict[str, Any]  # the returned program as data (`Candidate.to_json()`)
    details: Details

    @property
    def verification_rate(self) -> float | None:
        """Share of the optimizer's proposals that held when verified on the target: claims for
        ReflectiveRefine, step edits for BehaviorOptimizer; None for DSPy's optimizers, which make none."""
        details = self.details
        if isinstance(details, ReflectiveDetails):
            return details.claims_held / details.claims if details.claims else None
        if isinstance(details, BehaviorDetails):
            return details.edits_held / details.edits if details.edits else None
        return None

    def summary(self) -> dict[str, Any]:
        """The result as one flat JSON object: the shared fields, the details' own, the verification rate."""
        shared = self.model_dump(mode="json", exclude={"details", "schema_version"})
        own = self.details.model_dump(mode="json", exclude={"kind"})
        return {**shared, **own, "verification_rate": self.verification_rate}
