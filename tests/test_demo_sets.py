"""Few-shot demonstration sets: coverage-first draws are varied, seeded and stable."""

from __future__ import annotations

import dspy

from honed.optimizers.demo_sets import diverse_draw, few_shot_draws, random_draw


def examples(answers: list[str]) -> dict[str, dspy.Example]:
    return {f"e{i}": dspy.Example(id=f"e{i}", sentence=f"s{i}", passive=a).with_inputs("sentence")
            for i, a in enumerate(answers)}


ANSWERS = ["The cat was seen by the dog."] * 6 + ["The cats were seen by the dogs."] * 6 + ["Nothing happened."]


def test_a_diverse_draw_covers_each_form_of_answer_before_repeating_one():
    pool = examples(ANSWERS)
    picked = diverse_draw(pool, 3, "k")
    forms = {pool[i]["passive"] for i in picked}
    assert len(picked) == 3 and len(forms) == 3  # was, were, and the odd one out: none twice
    # a random draw of the same size usually repeats a form (here: for this seed, checked below)
    assert len({pool[i]["passive"] for i in random_draw(pool, 3, "k")}) < 3


def test_draws_are_seeded_and_stable():
    pool = examples(ANSWERS)
    assert diverse_draw(pool, 4, "a") == diverse_draw(pool, 4, "a")
    assert random_draw(pool, 4, "a") == random_draw(pool, 4, "a") != random_draw(pool, 4, "b")
    assert diverse_draw(pool, 50, "a") == tuple(pool)  # asking for more than there are: all of them


def test_few_shot_draws_alternate_coverage_and_larger_random_sets():
    pool = examples([f"answer {i}" for i in range(40)])
    draws = few_shot_draws(pool, 4, 4, seed=0)
    assert [name for name, _ in draws] == ["few-shot-0", "few-shot-1", "few-shot-2", "few-shot-3"]
    assert [len(ids) for _, ids in draws] == [4, 16, 4, 16]
    assert len({ids for _, ids in draws}) == 4  # four different sets
