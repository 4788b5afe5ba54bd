"""Candidate programs as data: per predictor, an instruction and demonstrations (by training example id).

Storing candidates as plain data, relative to the seed program, keeps the ledger readable, makes two
candidates comparable, and lets any candidate be rebuilt from the seed without pickling programs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dspy

from honed.modules import Behave, Procedure


@dataclass(frozen=True)
class PredictorState:
    """One predictor's prompt: its instruction, demonstrations from the training set (by id), and for
    behavior programs a procedure (JSON text) and worked demonstrations that include step traces."""

    instructions: str
    demo_ids: tuple[str, ...] = ()
    procedure: str | None = None
    worked_demos: tuple[str, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A program variant: the state of every predictor, plus where it came from."""

    predictors: dict[str, PredictorState]
    origin: str = "seed"
    parent: str | None = None

    @property
    def id(self) -> str:
        body = {name: [s.instructions, list(s.demo_ids), s.procedure, list(s.worked_demos)]
                for name, s in sorted(self.predictors.items())}
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]

    def with_predictor(self, name: str, state: PredictorState, origin: str) -> Candidate:
        return Candidate({**self.predictors, name: state}, origin=origin, parent=self.id)

    def to_json(self) -> dict[str, Any]:
        def state(s: PredictorState) -> dict[str, Any]:
            data: dict[str, Any] = {"instructions": s.instructions, "demo_ids": list(s.demo_ids)}
            if s.procedure is not None:
                data["procedure"] = json.loads(s.procedure)
                data["worked_demos"] = [json.loads(d) for d in s.worked_demos]
            return data

        return {"id": self.id, "origin": self.origin, "parent": self.parent,
                "predictors": {n: state(s) for n, s in self.predictors.items()}}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Candidate:
        """The candidate `to_json` wrote (as a run record's `candidate` holds it), with the same id.

        Procedures and worked demonstrations are re-serialized exactly as the optimizers first wrote them
        (`Procedure.model_dump_json`, sorted-key `json.dumps`), because the id hashes that text. A record
        whose `id` this code would compute differently raises `ValueError` rather than rebuild another
        program under its name."""
        states = {}
        for name, state in (data.get("predictors") or {}).items():
            procedure = state.get("procedure")
            states[name] = PredictorState(
                state.get("instructions", ""), tuple(state.get("demo_ids", ())),
                Procedure.model_validate(procedure).model_dump_json() if procedure is not None else None,
                tuple(json.dumps(d, sort_keys=True, default=str) for d in state.get("worked_demos", ())))
        candidate = cls(states, origin=data.get("origin") or "seed", parent=data.get("parent"))
        if data.get("id") not in (None, candidate.id):
            raise ValueError(f"candidate {data['id']} rebuilds as {candidate.id}: its record was written by "
                             "another version of honed's candidate format")
        return candidate


def example_id(example: dspy.Example, index: int) -> str:
    return str(example.get("id", index)) if hasattr(example, "get") else str(index)


def seed_candidate(program: dspy.Module, examples_by_id: Mapping[str, dspy.Example]) -> Candidate:
    """The program as given: its instructions, and its existing demos when they are known examples."""
    known = {id(e): key for key, e in examples_by_id.items()}
    states = {}
    for name, predictor in program.named_predictors():
        demo_ids = tuple(known[id(d)] for d in predictor.demos if id(d) in known)
        signature = getattr(predictor, "task_signature", predictor.signature)
        procedure = getattr(predictor, "procedure", None)
        states[name] = PredictorState(signature.instructions, demo_ids,
                                      procedure.model_dump_json() if procedure is not None else None)
    return Candidate(states)


def swap_predictor(program: dspy.Module, name: str, new: Any) -> None:
    """Replace the predictor at dotted attribute path `name` (as `named_predictors` spells it)."""
    *parents, last = name.split(".")
    owner: Any = program
    for part in parents:
        owner = getattr(owner, part)
    if not hasattr(owner, last):
        raise ValueError(f"cannot place a behavior predictor at `{name}`: only attribute paths are supported")
    setattr(owner, last, new)


def build(seed: dspy.Module, candidate: Candidate, examples_by_id: Mapping[str, dspy.Example]) -> dspy.Module:
    """A copy of the seed program carrying the candidate's instructions, demonstrations and procedures.

    A predictor whose state has a procedure becomes a `Behave` over the same task signature.
    """
    program = seed.deepcopy()
    for name, predictor in list(program.named_predictors()):
        state = candidate.predictors.get(name)
        if state is None:
            continue
        demos = [examples_by_id[key] for key in state.demo_ids]
        if state.procedure is not None:
            task_signature = getattr(predictor, "task_signature", predictor.signature)
            behave = Behave(task_signature.with_instructions(state.instructions),
                            Procedure.model_validate_json(state.procedure))
            behave.demos = demos + [dspy.Example(**json.loads(d)) for d in state.worked_demos]
            swap_predictor(program, name, behave)
            continue
        if hasattr(predictor, "set_task_instructions"):
            predictor.set_task_instructions(state.instructions)
        else:
            predictor.signature = predictor.signature.with_instructions(state.instructions)
        predictor.demos = demos
    return program
