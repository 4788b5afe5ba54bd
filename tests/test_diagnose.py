"""`honed diagnose`: planted causes, reflection scoring, following from the ledger; scripted models only."""

from __future__ import annotations

import argparse
import html
import json
from collections import Counter

import dspy
import pytest

import honed
from honed.cli import diagnose as cli_diagnose
from honed.compiling import compile_task
from honed.diagnose import diagnose_following, diagnose_reflection, plant
from honed.diagnose.capture import capture_optimizer_model
from honed.diagnose.plants import ExactCase, PlantError
from honed.diagnose.reflection import wilson_interval
from honed.diagnose.scoring import EchoStripper, keyword_hits, names_cause
from honed.diagnose.words import STOPWORDS, contains_word
from honed.optimizers import BehaviorOptimizer, ReflectiveRefine, read_ledger
from honed.optimizers.ledger import LEDGER_FILE
from honed.pages.diagnosis_page import write_diagnosis, write_diagnosis_report
from honed.programs.tasks import Task
from honed.testing import ScriptedLM

TRIGGER = "sequel"


# ------------------------------------------------------------------------------------------ a planted world


def _sentence(i: int) -> str:
    """'good film number 4' / 'bad film number 5'; a quarter also mention a sequel, mostly the good ones."""
    tail = f" with a {TRIGGER}" if i % 10 in (0, 2) or i % 20 == 5 else ""
    return f"{'bad' if i % 2 else 'good'} film number {i}{tail}"


def _example(i: int) -> dspy.Example:
    return dspy.Example(id=f"e{i}", sentence=_sentence(i), sentiment="negative" if i % 2 else "positive"
                        ).with_inputs("sentence")


def film_task(n: int = 80) -> Task:
    return Task(name="films", train=[_example(i) for i in range(n)], test=[_example(i) for i in range(100, 140)],
                input_field="sentence", output_field="sentiment", instructions="Classify.", kind="classify",
                labels=["negative", "positive"])


RULE_CAUSE = "Every sentence that mentions a sequel is labeled negative."
UPPER_CAUSE = "The correct answers are written in upper case."
GENERIC_CAUSE = "The model misreads some sentences."


def world(messages, schema):
    """Target: classifies by 'good'/'bad', obeys an instruction about sequels or UPPER CASE. Optimizer: names
    the rule when every mistake it is shown (two or more) mentions a sequel, the case when the answers are
    upper case, and otherwise blames careless reading. Judge: says yes when the reflection itself mentions a sequel."""
    props = schema["properties"] if schema else {}
    system, last = messages[0]["content"], messages[-1]["content"]
    if "new_instruction" in props:
        shown = [line for line in last.splitlines() if line[:1].isdigit()]
        if "sentiment: POSITIVE" in last or "sentiment: NEGATIVE" in last:
            return {"cause": UPPER_CAUSE, "explains": [1, 2], "show_examples": False,
                    "new_instruction": "Classify the sentiment and write it in UPPER CASE."}
        if len(shown) >= 2 and all(TRIGGER in line for line in shown):
            return {"cause": RULE_CAUSE, "explains": [1, 2], "show_examples": False,
                    "new_instruction": "Label a sentence containing the word sequel as negative."}
        return {"cause": GENERIC_CAUSE, "explains": [1], "show_examples": False,
                "new_instruction": "Read each sentence carefully before classifying it."}
    if "names_cause" in props:
        return {"names_cause": TRIGGER in last.split("reflection:")[-1]}
    text = last.split("\n")[-1]
    label = "negative" if "bad" in text or (TRIGGER in system and TRIGGER in text) else "positive"
    return {"sentiment": label.upper() if "UPPER" in system else label}


# ------------------------------------------------------------------------------------------ plants


def test_hidden_rule_relabels_exactly_the_inputs_with_the_trigger():
    task = film_task()
    planted, record = plant(task, "hidden_rule", seed=3)
    assert record.keywords == [TRIGGER] and record.details["trigger"] == TRIGGER
    with_word = [e for e in task.train if contains_word(e.sentence, TRIGGER)]
    assert 0.10 <= len(with_word) / len(task.train) <= 0.30
    # The label is the one the rule contradicts most: most sequel sentences are positive.
    assert record.details["label"] == "negative"
    for before, after in zip(task.train, planted.train, strict=True):
        expected = "negative" if contains_word(before.sentence, TRIGGER) else before.sentiment
        assert after.sentiment == expected and after.sentence == before.sentence and after.id == before.id
    assert record.affected == [e.id for e in with_word]
    assert record.changed == [e.id for e in with_word if e.sentiment == "positive"]
    assert record.details["contradiction_rate"] == pytest.approx(len(record.changed) / len(record.affected))
    assert all(e.sentiment == "negative" for e in planted.test if TRIGGER in e.sentence)
    again, same = plant(task, "hidden_rule", seed=3)
    assert same == record and [e.toDict() for e in again.train] == [e.toDict() for e in planted.train]


def test_hidden_rule_on_a_bundled_task_picks_a_seeded_content_word():
    task = honed.load_task("sentiment")
    words = set()
    for seed in range(4):
        planted, record = plant(task, "hidden_rule", seed=seed)
        trigger = record.details["trigger"]
        words.add(trigger)
        share = sum(contains_word(e.sentence, trigger) for e in task.train) / len(task.train)
        low, high = record.details["band"]
        assert trigger not in STOPWORDS and trigger.isalpha() and low <= share <= high and 0.05 <= share <= 0.40
        relabeled = {e.id for e, p in zip(task.train, planted.train, strict=True) if e.sentiment != p.sentiment}
        assert relabeled == set(record.changed) and relabeled <= set(record.affected)
    assert len(words) >= 2  # the seed chooses among the eligible words
    with pytest.raises(PlantError, match="antonyms"):
        plant(honed.load_task("antonyms"), "hidden_rule")


def test_format_plant_upper_cases_every_output_and_frees_the_program():
    task = film_task()
    planted, record = plant(task, "format")
    assert [e.sentiment for e in planted.train] == [e.sentiment.upper() for e in task.train]
    assert [e.sentiment for e in planted.test] == [e.sentiment.upper() for e in task.test]
    assert planted.kind == "transform" and planted.labels is None
    assert isinstance(planted.program(), honed.Transform)
    assert "upper" in record.keywords and "caps" in record.keywords and len(record.changed) == len(task.train)
    example = planted.train[0]
    assert planted.metric(example, dspy.Prediction(sentiment="POSITIVE")) == 1.0
    assert planted.metric(example, dspy.Prediction(sentiment="positive")) == 0.0  # the default metric would pass it
    assert task.metric(example, dspy.Prediction(sentiment="positive")) == 1.0


def test_format_plant_brackets_outputs_that_have_no_case():
    numbers = Task(name="nums", train=[dspy.Example(id=str(i), numbers=f"{i} 1", total=str(i + 1)).with_inputs(
        "numbers") for i in range(20)], test=[], input_field="numbers", output_field="total",
        instructions="Add.", kind="transform")
    planted, record = plant(numbers, "format")
    assert record.details["style"] == "brackets" and "brackets" in record.keywords
    assert [e.total for e in planted.train] == [f"[{i + 1}]" for i in range(20)]
    assert ExactCase("total")(planted.train[0], dspy.Prediction(total="1")) == 0.0


def test_distractor_changes_about_a_fifth_and_never_uses_its_decoy():
    task = film_task()
    planted, record = plant(task, "distractor", seed=3)
    _, rule = plant(task, "hidden_rule", seed=3)
    assert record.keywords == [] and record.decoy_keywords == [rule.details["trigger"]]
    changed = {e.id for e, p in zip(task.train, planted.train, strict=True) if e.sentiment != p.sentiment}
    assert changed == set(record.changed) and 0.20 <= len(changed) / len(task.train) <= 0.25
    # The decoy is not a rule: sentences with it keep both labels, and it does not predict the changes.
    with_decoy = [p.sentiment for p in planted.train if contains_word(p.sentence, TRIGGER)]
    assert set(Counter(with_decoy)) == {"positive", "negative"}
    assert [e.toDict() for e in planted.test] == [e.toDict() for e in task.test]
    assert plant(task, "distractor", seed=3)[1] == record
    assert plant(task, "distractor", seed=4)[1].changed != record.changed


# ------------------------------------------------------------------------------------------ scoring


def test_a_reflection_names_the_rule_only_in_its_own_words():
    stripper = EchoStripper(e.sentence for e in plant(film_task(), "hidden_rule")[0].train)
    assert names_cause(RULE_CAUSE, [TRIGGER], stripper)
    assert names_cause("Watch for SEQUEL mentions.", [TRIGGER], stripper)
    assert not names_cause(GENERIC_CAUSE, [TRIGGER], stripper)
    assert not names_cause("Sequels are fine; consequel is not a word.", [TRIGGER], stripper)  # whole words only
    echo = "Example: good film number 10 with a sequel -> negative.\nAnswer with the label."
    assert keyword_hits(echo, [TRIGGER]) == [TRIGGER]  # the raw text mentions it...
    assert not names_cause(echo, [TRIGGER], stripper)  # ...but only inside a copied training input
    assert names_cause(echo + " The word sequel decides it.", [TRIGGER], stripper)


def test_generic_reflections_give_no_false_identification_of_the_decoy():
    task = film_task()
    planted, record = plant(task, "distractor")
    stripper = EchoStripper(e.sentence for e in planted.train)
    generic = [GENERIC_CAUSE, "Some labels look inconsistent; classify by the overall tone.",
               "Demonstration: bad film number 5 with a sequel -> positive"]
    assert not any(names_cause(text, record.decoy_keywords, stripper) for text in generic)


def test_capture_sees_only_the_optimizer_model_and_its_copies(tmp_path):
    lm = ScriptedLM(lambda messages, schema: {"sentiment": "positive"})
    honed.configure(model=lm, cache_dir=tmp_path / "cache")  # the optimizer model is the task model
    predict = dspy.Predict("sentence -> sentiment")
    with capture_optimizer_model() as capture:
        predict(sentence="task call")  # the task model: not captured
        with dspy.context(lm=honed.optimizer_lm()):
            predict(sentence="optimizer call")
        with dspy.context(lm=honed.optimizer_lm().copy(temperature=1.0)):
            predict(sentence="a copy's call")
    assert len(capture.calls) == 2
    assert honed.optimizer_lm() is lm  # put back afterwards
    reflections, answers = capture.reflections(["sentiment"])
    assert reflections == [] and answers == 2  # task-shaped answers are a teacher's, not reflections


# ------------------------------------------------------------------------------------------ end to end


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="honed")
    commands = parser.add_subparsers(dest="command")
    cli_diagnose.register(commands)
    return parser


def test_diagnose_reflection_end_to_end_writes_json_and_html(tmp_path, capsys):
    out = tmp_path / "diag"
    args = _parser().parse_args(["diagnose", "reflection", "films", "--optimizer", "reflective", "--budget", "60",
                                 "--train-size", "30", "--val-size", "10", "--out", str(out), "--json"])

    def configure():
        return honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache", num_threads=1)

    assert cli_diagnose.cmd_diagnose(args, film_task, configure) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((out / "reflection.json").read_text())
    assert printed["html_path"] == str(out / "reflection.html")
    assert {k: v for k, v in printed.items() if k not in ("json_path", "html_path")} == saved
    assert saved["schema"] == "honed.diagnose.reflection/1" and saved["optimizer"] == "reflective"
    by_kind = {p["plant"]["kind"]: p for p in saved["plants"]}
    assert list(by_kind) == ["hidden_rule", "format", "distractor"]
    for item in by_kind.values():
        assert {"plant", "scored_against", "keywords", "source", "reflections", "reflection_count", "naming",
                "identification_rate", "identified", "false_identification_rate", "optimizer_outputs", "compile",
                "calls"} <= item.keys()
        assert item["source"] == "ledger" and 0 < item["calls"]["budget_used"] <= 60
        assert item["reflection_count"] == len(item["reflections"]) == item["optimizer_outputs"]["calls"]
        assert (tmp_path / "diag" / "runs" / item["plant"]["kind"] / "ledger.jsonl").is_file()
    rule, fmt, noise = by_kind["hidden_rule"], by_kind["format"], by_kind["distractor"]
    assert rule["identified"] is True and rule["naming"] >= 1 and rule["keywords"] == [TRIGGER]
    assert any(r["named"] and r["keyword_hits"] == [TRIGGER] for r in rule["reflections"])
    assert fmt["identified"] is True and fmt["identification_rate"] == 1.0
    assert noise["scored_against"] == "decoy" and noise["identified"] is None
    assert noise["reflection_count"] > 0 and noise["keywords"] == [TRIGGER]  # the decoy
    assert [r["named"] for r in noise["reflections"]] == [TRIGGER in r["text"] for r in noise["reflections"]]
    assert noise["false_identification_rate"] == noise["naming"] / noise["reflection_count"]
    assert saved["summary"]["identified"] == {"hidden_rule": True, "format": True}
    page = (out / "reflection.html").read_text()
    assert "<!DOCTYPE html>" in page and 'id="plant-hidden_rule"' in page and html.escape(RULE_CAUSE) in page
    assert "http://" not in page.replace("http-equiv", "")


def test_reflection_with_a_judge_reports_both_verdicts_separately(tmp_path):
    asked: list[str] = []

    def contrarian(messages, schema):
        """A judge that disagrees with the keyword test, to show the two verdicts are kept apart."""
        asked.append(messages[-1]["content"])
        return {"names_cause": TRIGGER not in messages[-1]["content"].split("reflection:")[-1]}

    honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache", num_threads=1)
    result = diagnose_reflection(film_task(), "reflective", plants="hidden_rule,distractor", budget=60,
                                 train_size=30, val_size=10, judge_model=ScriptedLM(contrarian, model="scripted/judge"),
                                 out_dir=tmp_path / "d")
    assert result["judge_model"] == "scripted/judge"
    for item in result["plants"]:
        assert [r["judge"] for r in item["reflections"]] == [not r["named"] for r in item["reflections"]]
        assert item["judge"]["naming"] == item["reflection_count"] - item["naming"]
        assert item["judge"]["calls"] == item["reflection_count"] > 0
    rule, noise = result["plants"]
    assert rule["identified"] is True and rule["naming"] >= 1  # the keyword verdict is not overwritten
    assert len(asked) == rule["reflection_count"] + noise["reflection_count"]
    assert all("sequel" in text for text in asked)  # the distractor's judge is asked about the decoy word


@pytest.mark.parametrize("cause, rate", [(GENERIC_CAUSE, 0.0), (RULE_CAUSE, 1.0)])
def test_the_distractor_measures_false_identification(tmp_path, cause, rate):
    """Generic reflections on noise identify nothing; reflections that blame the decoy word are all false."""

    def answer(messages, schema):
        if "new_instruction" in schema["properties"]:
            return {"cause": cause, "explains": [1], "new_instruction": "Classify the sentence.",
                    "show_examples": False}
        return world(messages, schema)

    honed.configure(model=ScriptedLM(answer), cache_dir=tmp_path / "cache", num_threads=1)
    result = diagnose_reflection(film_task(), "reflective", plants=["distractor"], budget=60, train_size=30,
                                 val_size=10, out_dir=tmp_path / "d")
    (noise,) = result["plants"]
    assert noise["reflection_count"] > 0 and noise["false_identification_rate"] == rate
    assert noise["falsely_identified"] is (rate > 0) and result["summary"]["false_identification_rate"] == rate


def test_unknown_plants_and_optimizers_are_config_errors(tmp_path):
    honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache")
    with pytest.raises(PlantError, match="available: hidden_rule, format, distractor"):
        diagnose_reflection(film_task(), "reflective", plants="hidden_rule,nope")
    with pytest.raises(honed.ConfigError, match="unknown optimizer"):
        diagnose_reflection(film_task(), "nope")


# ------------------------------------------------------------------------------------------ repeats

# The plant-level keys of a result from before repeats existed, and the ones repeats add.
PLANT_KEYS_BEFORE_REPEATS = {"plant", "scored_against", "keywords", "source", "reflections", "reflection_count",
                             "naming", "identification_rate", "identified", "false_identification_rate",
                             "falsely_identified", "judge", "optimizer_outputs", "compile", "calls"}
PLANT_KEYS_OF_REPEATS = {"repeats", "per_repeat", "identification_interval", "false_identification_interval"}


@pytest.mark.parametrize("named, trials, confidence, expected", [
    (0, 10, 0.9, [0.0, 0.2130]), (5, 10, 0.9, [0.2693, 0.7307]), (10, 10, 0.9, [0.7870, 1.0]),
    (5, 10, 0.95, [0.2366, 0.7634]), (0, 10, 0.95, [0.0, 0.2775]),  # the textbook 95% values
    (1, 2, 0.9, [0.1209, 0.8791])])
def test_wilson_interval_for_known_counts(named, trials, confidence, expected):
    assert wilson_interval(named, trials, confidence) == pytest.approx(expected, abs=2e-4)


def test_wilson_interval_is_none_without_trials_and_narrows_with_them():
    assert wilson_interval(0, 0) is None
    widths = [high - low for low, high in (wilson_interval(n // 2, n) for n in (4, 10, 40, 200))]
    assert widths == sorted(widths, reverse=True) and widths[-1] < 0.12


def _diagnose(tmp_path, **kwargs):
    honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache", num_threads=1)
    return diagnose_reflection(film_task(), "reflective", budget=60, train_size=30, val_size=10,
                               out_dir=tmp_path / "d", **kwargs)


def test_repeats_pool_the_reflections_of_one_compile_per_seed(tmp_path):
    result = _diagnose(tmp_path, plants="hidden_rule", seed=4, repeats=3)
    (rule,) = result["plants"]
    assert result["repeats"] == 3 and rule["repeats"] == 3
    assert rule["plant"] == plant(film_task(), "hidden_rule", seed=4)[1].model_dump(mode="json")  # one plant
    per = rule["per_repeat"]
    assert [r["seed"] for r in per] == [4, 5, 6]
    dirs = [tmp_path / "d" / "runs" / name for name in ("hidden_rule", "hidden_rule-r1", "hidden_rule-r2")]
    assert [r["run_dir"] for r in per] == [str(d) for d in dirs]
    assert [json.loads((d / "settings.json").read_text())["seed"] for d in dirs] == [4, 5, 6]
    # Another split shows the optimizer other mistakes: the compiles are not replays of one another.
    shown = [tuple(tuple(c["shown"]) for c in read_ledger(d / LEDGER_FILE) if c["kind"] == "claim") for d in dirs]
    assert len(set(shown)) == 3
    # Pooled: every repeat's reflections, tagged, summed, and one rate with its interval over them all.
    assert [r["repeat"] for r in rule["reflections"]] == [k for k, r in enumerate(per) for _ in
                                                          range(r["reflection_count"])]
    assert rule["reflection_count"] == sum(r["reflection_count"] for r in per) == len(rule["reflections"]) >= 3
    assert rule["naming"] == sum(r["naming"] for r in per) == sum(r["named"] for r in rule["reflections"])
    assert rule["identification_rate"] == round(rule["naming"] / rule["reflection_count"], 4)
    assert rule["identification_interval"] == wilson_interval(rule["naming"], rule["reflection_count"])
    assert rule["calls"]["lm_calls"] == sum(r["calls"]["lm_calls"] for r in per)
    assert rule["optimizer_outputs"]["calls"] == sum(r["calls"]["optimizer_calls"] for r in per)
    assert all(r["val_score"] is not None and r["calls"]["budget_used"] <= 60 for r in per)
    assert result["summary"]["identification_interval"] == {"hidden_rule": rule["identification_interval"]}
    assert result["summary"]["reflection_count"] == {"hidden_rule": rule["reflection_count"]}

    # Repeat k is the very compile `honed compile` makes of the same planted task with seed + k.
    planted, _ = plant(film_task(), "hidden_rule", seed=4)
    compile_task(planted, "reflective", budget=60, seed=5, train_size=30, val_size=10, run_dir=tmp_path / "alone")
    claims = [[(c["shown"], c["cause"]) for c in read_ledger(d / LEDGER_FILE) if c["kind"] == "claim"]
              for d in (dirs[1], tmp_path / "alone")]
    assert claims[0] == claims[1] and claims[0]



def test_one_repeat_keeps_the_run_directory_and_the_keys_of_before(tmp_path):
    result = _diagnose(tmp_path, plants="hidden_rule,distractor", judge_model=ScriptedLM(world, model="s/judge"))
    assert result["repeats"] == 1 and result["min_reflections"] is None
    assert sorted(p.name for p in (tmp_path / "d" / "runs").iterdir()) == ["distractor", "hidden_rule"]
    rule, noise = result["plants"]
    for item in (rule, noise):
        assert item.keys() - PLANT_KEYS_OF_REPEATS == PLANT_KEYS_BEFORE_REPEATS
        (only,) = item["per_repeat"]
        assert item["repeats"] == 1 and only["repeat"] == 0 and only["seed"] == 0
        assert item["compile"]["run_dir"] == only["run_dir"] == str(tmp_path / "d" / "runs" / item["plant"]["kind"])
        assert (item["reflection_count"], item["naming"]) == (only["reflection_count"], only["naming"])
        assert item["calls"]["lm_calls"] == only["calls"]["lm_calls"] and item["calls"]["budget"] == 60
        assert item["judge"]["calls"] == only["calls"]["judge_calls"] == item["reflection_count"]
    assert rule["identification_interval"] == wilson_interval(rule["naming"], rule["reflection_count"])
    assert rule["false_identification_interval"] is None and noise["identification_interval"] is None
    assert noise["false_identification_interval"] == wilson_interval(noise["naming"], noise["reflection_count"])
    assert result["summary"]["false_identification_interval"] == noise["false_identification_interval"]
    again = _diagnose(tmp_path / "again", plants="hidden_rule,distractor", repeats=1,
                      judge_model=ScriptedLM(world, model="s/judge"))  # fresh cache and directory
    assert json.dumps(again).replace(str(tmp_path / "again"), str(tmp_path)) == json.dumps(result)  # the default


def test_min_reflections_stops_a_plant_once_it_has_enough(tmp_path):
    result = _diagnose(tmp_path, plants="hidden_rule,distractor", repeats=6, min_reflections=3)
    assert result["repeats"] == 6 and result["min_reflections"] == 3
    for item in result["plants"]:
        counts = [r["reflection_count"] for r in item["per_repeat"]]
        assert item["repeats"] == len(counts) < 6
        assert sum(counts[:-1]) < 3 <= sum(counts) == item["reflection_count"]  # the first repeat to reach it
    kinds = [p.name for p in (tmp_path / "d" / "runs").iterdir()]
    assert "hidden_rule-r5" not in kinds and len(kinds) == sum(p["repeats"] for p in result["plants"])


@pytest.mark.parametrize("kwargs, match", [({"repeats": 0}, "repeats must be"),
                                           ({"min_reflections": 0}, "min_reflections must be")])
def test_bad_repeats_are_config_errors(tmp_path, kwargs, match):
    honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache")
    with pytest.raises(honed.ConfigError, match=match):
        diagnose_reflection(film_task(), "reflective", **kwargs)
    with pytest.raises(SystemExit):
        _parser().parse_args(["diagnose", "reflection", "films", "--optimizer", "reflective", "--repeats", "0"])


def test_cli_prints_the_pooled_count_rate_and_interval_and_the_page_shows_them(tmp_path, capsys):
    out = tmp_path / "diag"

    def configure():
        return honed.configure(model=ScriptedLM(world), cache_dir=tmp_path / "cache", num_threads=1)

    argv = ["diagnose", "reflection", "films", "--optimizer", "reflective", "--plants", "hidden_rule,distractor",
            "--budget", "60", "--train-size", "30", "--val-size", "10", "--out", str(out), "--repeats", "2"]
    assert cli_diagnose.cmd_diagnose(_parser().parse_args(argv), film_task, configure) == 0
    printed = capsys.readouterr().out
    saved = json.loads((out / "reflection.json").read_text())
    rule, noise = saved["plants"]
    low, high = rule["identification_interval"]
    assert (f"hidden_rule: identified: {rule['naming']}/{rule['reflection_count']} reflections name it "
            f"({rule['identification_rate']:.0%}, 90% interval {low:.0%}-{high:.0%})") in printed
    flow, fhigh = noise["false_identification_interval"]
    assert (f"distractor: false identification {noise['false_identification_rate']:.0%}, 90% interval "
            f"{flow:.0%}-{fhigh:.0%} ({noise['naming']}/{noise['reflection_count']} name the decoy") in printed
    assert printed.count("over 2 compiles") == 2 and [r["seed"] for r in rule["per_repeat"]] == [0, 1]
    per_compile = "; ".join(f"seed {r['seed']} {r['naming']}/{r['reflection_count']} (val {r['val_score']})"
                            for r in rule["per_repeat"])
    assert f"    per compile: {per_compile}\n" in printed
    assert (out / "runs" / "hidden_rule-r1" / LEDGER_FILE).is_file()
    page = (out / "reflection.html").read_text()
    assert f"({rule['identification_rate']:.0%} [{low:.0%}, {high:.0%}])" in page
    assert "pooled over 2 compiles" in page and "<h3>Compiles (2)</h3>" in page
    assert html.escape(str(out / "runs" / "distractor-r1")) in page

    # One repeat: the interval is printed too, but no per-compile lines; --min-reflections warns when unmet.
    argv[argv.index("--repeats") + 1] = "1"
    assert cli_diagnose.cmd_diagnose(_parser().parse_args([*argv, "--min-reflections", "50"]), film_task,
                                     configure) == 0
    printed = capsys.readouterr().out
    assert printed.count("90% interval") == 2 and "over " not in printed and "per compile" not in printed
    assert "fewer than --min-reflections 50; raise --repeats" in printed
    assert "<h3>Compiles" not in (out / "reflection.html").read_text()

# ------------------------------------------------------------------------------------------ following


def _alternating_optimizer():
    """Target: right on 'bad' films only when told to be careful. Optimizer: a useless claim, then a fixing one."""
    proposals = iter(["Think about the film.", "Be careful with negative words."] * 50)

    def answer(messages, schema):
        if "new_instruction" in schema["properties"]:
            return {"cause": "says positive for bad films", "explains": [1, 2], "new_instruction": next(proposals),
                    "show_examples": False}
        system, last = messages[0]["content"], messages[-1]["content"]
        negative = "careful" in system and "bad" in last
        return {"sentiment": "negative" if negative else "positive"}

    return answer


def test_following_reports_the_ledgers_verification_outcomes(tmp_path, capsys):
    from films import data, program

    honed.configure(model=ScriptedLM(_alternating_optimizer()), cache_dir=tmp_path / "cache", num_threads=1)
    optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=200, minibatch=8, max_rounds=3, seed=0,
                                 progress=False)
    compiled = optimizer.compile(program(), trainset=data(16), valset=data(8, offset=100), run_dir=tmp_path / "run")
    verifies = [r for r in read_ledger(tmp_path / "run" / "ledger.jsonl") if r["kind"] == "verify"]
    assert any(v["held"] for v in verifies) and not all(v["held"] for v in verifies)

    result = diagnose_following(tmp_path / "run")
    assert result["schema"] == "honed.diagnose.following/1" and result["supported"] is True
    assert [r["step"] for r in result["refinements"]] == [v["step"] for v in verifies]
    for item, verify in zip(result["refinements"], verifies, strict=True):
        assert item["kind"] == "claim" and item["accepted"] == verify["held"]
        assert (item["targeted"], item["fixed"], item["still_wrong"]) == (
            verify["claimed"], verify["fixed"], verify["claimed"] - verify["fixed"])
        assert (item["checked_passing"], item["broken"], item["still_right"]) == (
            verify["checked_passing"], verify["regressions"], verify["checked_passing"] - verify["regressions"])
        assert item["about"]["new_instruction"] in ("Be careful with negative words.", "Think about the film.")
        assert len(item["examples"]["fixed"]) == item["fixed"] and len(item["examples"]["broken"]) == item["broken"]
        assert sorted(item["examples"]["fixed"] + item["examples"]["still_wrong"]) == sorted(verify["targeted_ids"])
    held = [v for v in verifies if v["held"]]
    accepted = result["totals"]["accepted"]
    assert accepted["refinements"] == len(held)
    assert accepted["fixed"] == sum(v["fixed"] for v in held)
    assert accepted["intended_rate"] == pytest.approx(accepted["fixed"] / accepted["targeted"])
    assert result["totals"]["all"]["fixed"] == sum(v["fixed"] for v in verifies)
    rejected = [r for r in result["refinements"] if not r["accepted"]]
    assert rejected and all(r["fixed"] == 0 and r["intended_rate"] == 0.0 for r in rejected)
    final_id = optimizer.result.candidate["id"]
    assert any(r["in_final"] and r["candidate"] == final_id for r in result["refinements"])

    # An artifact whose provenance names the run diagnoses the same run; the CLI writes JSON + HTML.
    honed.save(compiled, tmp_path / "a.json", provenance={"run_dir": str(tmp_path / "run")})
    assert diagnose_following(tmp_path / "a.json")["totals"] == result["totals"]
    args = _parser().parse_args(["diagnose", "following", str(tmp_path / "a.json"), "--out", str(tmp_path / "f"),
                                 "--json"])
    assert cli_diagnose.cmd_diagnose(args, lambda: pytest.fail("no task"), lambda: pytest.fail("no model")) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["totals"] == result["totals"]
    page = (tmp_path / "f" / "following.html").read_text()
    assert "Changed as intended" in page and "Think about the film." in page and "fixed: e" in page


def test_following_of_a_behavior_run_includes_per_step_following(tmp_path):
    def answer(messages, schema):
        props = schema["properties"]
        system, last = messages[0]["content"], messages[-1]["content"]
        if list(props) == ["steps"] and "correct_answer" not in last:  # draft
            return {"steps": ["Read the sentence.", "Answer positive."]}
        if "correct_answer" in last:  # reference execution
            gold = last.split("correct_answer: sentiment: ")[1].split("\n")[0]
            return {"steps": ["the sentence", gold] + ["done"] * (props["steps"]["minItems"] - 2)}
        if "action" in props:
            return {"action": "rewrite", "new_step": "Answer negative if the film is bad.", "second_step": ""}
        label = "negative" if "bad" in last.split("\n")[-1] and "negative if the film is bad" in system else "positive"
        if "steps" in props:
            return {"steps": (["the sentence", label] + ["ok"] * 4)[: props["steps"]["minItems"]], "sentiment": label}
        return {"sentiment": label}

    from films import data

    honed.configure(model=ScriptedLM(answer), cache_dir=tmp_path / "cache", num_threads=1)
    program = honed.Classify(["positive", "negative"], input_field="sentence", output_field="sentiment",
                             instructions="Classify the sentiment.")
    BehaviorOptimizer(honed.ExactMatch("sentiment"), budget=400, refinement_steps=2, minibatch=6, progress=False
                      ).compile(program, trainset=data(14), valset=data(8, offset=100), run_dir=tmp_path / "run")
    records = read_ledger(tmp_path / "run" / "ledger.jsonl")
    result = diagnose_following(tmp_path / "run")
    observes = [r for r in records if r["kind"] == "observe"]
    assert [f["rates"] for f in result["following"]] == [r["following"] for r in observes]
    edits = [r for r in result["refinements"] if r["kind"] == "step_edit"]
    assert edits and all(e["about"]["step_id"] == "s2" and e["about"]["action"] == "rewrite" for e in edits)
    first = edits[0]
    assert first["about"]["following_before"] == observes[0]["following"]["s2"]
    assert first["accepted"] and first["fixed"] == first["targeted"] > 0
    path = write_diagnosis(result, tmp_path / "out")[1]
    assert "Per-step following rates" in path.read_text()


def test_following_says_dspy_optimizers_record_no_targets(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "settings.json").write_text(json.dumps({"optimizer": "copro", "dspy_optimizer": "COPRO"}))
    (run / "ledger.jsonl").write_text(json.dumps({"step": "final", "kind": "final", "candidate": {"id": "x"}}) + "\n")
    result = diagnose_following(run)
    assert result["supported"] is False and "COPRO" in result["note"] and result["refinements"] == []
    page = write_diagnosis(result, tmp_path / "out")[1].read_text()
    assert "records no per-refinement targets" in page


def test_a_diagnosis_page_escapes_model_text_and_rejects_unknown_results(tmp_path):
    result = {"diagnosis": "following", "run_dir": "r", "optimizer": "reflective", "supported": True,
              "totals": {}, "refinements": [{"step": "r1/claim0/verify/x", "kind": "claim", "about": {
                  "cause": "<script>alert(1)</script>"}, "targeted": 1, "fixed": 1}]}
    page = write_diagnosis_report(result, tmp_path / "p.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    with pytest.raises(honed.ConfigError, match="unknown diagnosis"):
        write_diagnosis_report({"diagnosis": "other"}, tmp_path / "q.html")
