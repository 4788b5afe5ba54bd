"""Few-shot demonstration sets: coverage-first draws are varied, seeded and stable."""

from __future__ import annotations

import dspy

from honed.optimizers.demo_sets import (
    answer_forms,
    balanced_sample,
    diverse_draw,
    few_shot_draws,
    in_turn_by_form,
    random_draw,
)


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


def animals(pairs: list[tuple[str, str, str]]) -> list[dspy.Example]:
    return [dspy.Example(animals=f"{a}, {b}", animal=gold).with_inputs("animals") for a, b, gold in pairs]


def test_answer_forms_are_labels_copy_positions_or_other():
    labels = [dspy.Example(sentence=f"s{i}", sentiment="positive" if i % 3 else "negative").with_inputs("sentence")
              for i in range(9)]
    assert answer_forms(labels) == ["negative", "positive", "positive"] * 3
    copies = animals([("cat", "elephant", "elephant"), ("whale", "ant", "whale"), ("dog", "horse", "horse"),
                      ("bear", "mouse", "bear"), ("ox", "emu", "ox"), ("rat", "yak", "yak"), ("eel", "cow", "cow")])
    assert answer_forms(copies) == ["copy:animals:second", "copy:animals:first", "copy:animals:second",
                                    "copy:animals:first", "copy:animals:first", "copy:animals:second",
                                    "copy:animals:second"]
    free = list(examples([f"answer {i}" for i in range(9)]).values())
    assert answer_forms(free) == ["other"] * 9  # nine distinct answers copied from nowhere: no label set


def test_a_balanced_sample_takes_as_many_of_each_form_from_a_skewed_pool():
    skewed = animals([(f"a{i}", f"b{i}", f"b{i}") for i in range(15)] + [(f"c{i}", f"d{i}", f"c{i}") for i in range(5)])
    picked = balanced_sample(skewed, 6, skewed)
    forms = answer_forms(skewed)
    assert [forms[skewed.index(e)] for e in picked].count("copy:animals:first") == 3 and len(picked) == 6
    # the last ones of each form (the split is already shuffled), in the pool's order
    assert [e.animal for e in picked] == ["b12", "b13", "b14", "c2", "c3", "c4"]
    # a form with too few examples in the pool gives what it has; the others fill the rest
    assert len(balanced_sample(skewed, 12, skewed)) == 12
    assert sum(forms[skewed.index(e)] == "copy:animals:first" for e in balanced_sample(skewed, 12, skewed)) == 5


def test_forms_take_turns_most_frequent_first_in_the_pool_order():
    skewed = animals([(f"a{i}", f"b{i}", f"b{i}") for i in range(5)] + [(f"c{i}", f"d{i}", f"c{i}") for i in range(2)])
    assert [e.animal for e in in_turn_by_form(skewed, skewed, picks=3)] == ["b0", "c0", "b1", "c1", "b2", "b3", "b4"]


def test_more_forms_than_picks_keep_the_split_order():
    words = ["ant", "axe", "arm", "bee", "bus", "cat", "cow", "cup", "dog", "dot", "ape", "bat"]
    letters = [dspy.Example(word=w, letter=w[0]).with_inputs("word") for w in words]
    assert set(answer_forms(letters)) == {"a", "b", "c", "d"}  # 4 labels among 12 answers: a label set
    assert in_turn_by_form(letters, letters, picks=3) == letters  # 4 forms, 3 picks: nothing to balance
    assert [e.word for e in in_turn_by_form(letters, letters, picks=4)][:4] == ["ant", "bee", "cat", "dog"]
