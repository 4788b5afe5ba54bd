"""Candidate programs as data: per predictor, an instruction and demonstrations (by training example id).

Storing candidates as plain data, relative to the seed program, keeps the ledger readable, makes two
candidates comparable, and lets any candidate be rebuilt from the seed without pickling programs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dspy


@dataclass(frozen=True)
class PredictorState:
    instructions: str
    demo_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A program variant: the state of every predictor, plus where it came from."""

    predictors: dict[str, PredictorState]
    origin: str = "seed"
    parent: str | None = None
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def id(self) -> str:
        body = {name: [s.instructions, list(s.demo_ids)] for name, s in sorted(self.predictors.items())}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def with_predictor(self, name: str, state: PredictorState, origin: str) -> Candidate:
        return Candidate({**self.predictors, name: state}, origin=origin, parent=self.id)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "origin": self.origin, "parent": self.parent,
                "predictors": {n: {"instructions": s.instructions, "demo_ids": list(s.demo_ids)}
                               for n, s in self.predictors.items()}}


def example_id(example: dspy.Example, index: int) -> str:
    return str(example.get("id", index)) if hasattr(example, "get") else str(index)


def seed_candidate(program: dspy.Module, examples_by_id: Mapping[str, dspy.Example]) -> Candidate:
    """The program as given: its instructions, and its existing demos when they are known examples."""
    known = {id(e): key for key, e in examples_by_id.items()}
    states = {}
    for name, predictor in program.named_predictors():
        demo_ids = tuple(known[id(d)] for d in predictor.demos if id(d) in known)
        states[name] = PredictorState(predictor.signature.instructions, demo_ids)
    return Candidate(states)


def build(seed: dspy.Module, candidate: Candidate, examples_by_id: Mapping[str, dspy.Example]) -> dspy.Module:
    """A copy of the seed program carrying the candidate's instructions and demonstrations."""
    program = seed.deepcopy()
    for name, predictor in program.named_predictors():
        state = candidate.predictors.get(name)
        if state is None:
            continue
        predictor.signature = predictor.signature.with_instructions(state.instructions)
        predictor.demos = [examples_by_id[key] for key in state.demo_ids]
    return program
