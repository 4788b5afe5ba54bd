"""The tie-break a race uses where the metric cannot tell candidates apart: how close the answers came."""

from __future__ import annotations

from collections.abc import Sequence

import dspy

from honed.evaluate import ExampleResult
from honed.optimizers.candidates import Candidate, PredictorState
from honed.optimizers.closeness import answer_closeness, value_closeness
from honed.optimizers.search import CandidateSearch


def test_numbers_compare_by_value_and_text_by_characters():
    assert value_closeness("12", 13) > value_closeness("3", 13) > 0
    assert value_closeness(" 13 ", "13") == 1.0
    assert value_closeness("forty-one", "forty-two") > value_closeness("42", "forty-two")
    assert value_closeness("", "cat") == 0.0 and value_closeness(None, "") == 1.0


def example(gold: str) -> dspy.Example:
    return dspy.Example(id=gold, number="42", word=gold).with_inputs("number")


def test_full_marks_are_closest_and_nothing_predicted_is_farthest():
    ex = example("forty-two")
    assert answer_closeness(ExampleResult(ex, dspy.Prediction(word="anything"), 1.0)) == 1.0
    assert answer_closeness(ExampleResult(ex, None, 0.0, error="boom")) == 0.0
    assert answer_closeness(ExampleResult(ex, dspy.Prediction(other="x"), 0.0)) == 0.0  # no field to compare
    assert 0.0 < answer_closeness(ExampleResult(ex, dspy.Prediction(word="forty-one"), 0.0)) < 1.0


class _Run:
    """Just what a race touches of a compile run: the ledger."""

    def __init__(self) -> None:
        self.records: list = []

    def log(self, record) -> None:
        self.records.append(record)


class _ScriptedSearch(CandidateSearch):
    """A search whose candidates answer from a script (candidate origin -> answer) instead of a model."""

    def __init__(self, answers: dict[str, str], val: list[dspy.Example]) -> None:
        super().__init__(_Run(), dspy.Module(), [], val, seed=0, beam=2, verify_passing=1)
        self.answers = answers
        self.ran: list[tuple[str, int]] = []

    def evaluate(self, candidate: Candidate, examples: Sequence[dspy.Example]) -> list[ExampleResult]:
        self.ran.append((candidate.origin, len(examples)))
        said = self.answers[candidate.origin]
        return [ExampleResult(e, dspy.Prediction(word=said), float(said == e.word)) for e in examples]


def candidate(name: str) -> Candidate:
    return Candidate({"p": PredictorState(f"instructions {name}")}, origin=name)


def test_a_tied_rung_advances_the_closer_answers_not_the_earlier_candidates():
    """Every candidate scores 0 on the first rung; the one whose answers are nearest the gold goes on,
    although it was listed last, and the order only decides between equally close answers."""
    val = [example("forty-two") for _ in range(8)]
    search = _ScriptedSearch({"digits": "42", "blank": "", "near": "forty-one"}, val)
    finalists = search.race("step0", [candidate("digits"), candidate("blank"), candidate("near")], keep=1)
    assert [c.origin for c, _ in finalists] == ["near"]
    assert ("blank", 2) not in search.ran[3:] and ("near", 2) in search.ran[3:]  # rung two: near and digits
    closeness = [r.closeness for r in search.run.records if r.candidate == candidate("near").id]
    assert closeness and all(c > 0.5 for c in closeness)


def test_the_metric_still_outranks_closeness():
    """A candidate that answers right on the first rung goes on before one that is merely close."""
    val = [example("forty-two") for _ in range(8)]
    search = _ScriptedSearch({"near": "forty-one", "right": "forty-two", "far": "zzz"}, val)
    finalists = search.race("step0", [candidate("near"), candidate("far"), candidate("right")], keep=1)
    assert finalists[0][0].origin == "right" and finalists[0][1] == 1.0
