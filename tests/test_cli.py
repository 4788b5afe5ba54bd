"""The CLI's JSON contract, its exit codes, and the cached second run."""

from __future__ import annotations

import json

import pytest

from honed.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.model
def test_eval_json_contract_and_cached_rerun(capsys, cache_dir):
    code, out, _ = run(capsys, "eval", "sentiment", "--limit", "4", "--json", "--cache-dir", str(cache_dir))
    assert code == 0
    first = json.loads(out)
    assert {"score", "n", "parse_failures", "lm_calls", "cache_hits"} <= first.keys()
    assert first["n"] == 4 and first["parse_failures"] == 0 and first["lm_calls"] == 4
    assert 0.0 <= first["score"] <= 1.0
    code, out, _ = run(capsys, "eval", "sentiment", "--limit", "4", "--json", "--cache-dir", str(cache_dir))
    second = json.loads(out)
    assert second["lm_calls"] == 0 and second["cache_hits"] == 4 and second["score"] == first["score"]


@pytest.mark.model
def test_eval_on_user_files_picks_a_program(capsys, tmp_path, cache_dir):
    train = tmp_path / "yn.train.jsonl"
    train.write_text("\n".join(json.dumps({"input": f"Is {i} even?", "output": "yes" if i % 2 == 0 else "no"})
                               for i in range(6)))
    code, out, _ = run(capsys, "eval", "--train", str(train), "--test", str(train), "--limit", "2", "--json",
                       "--cache-dir", str(cache_dir))
    assert code == 0
    result = json.loads(out)
    assert result["n"] == 2 and result["parse_failures"] == 0


COMPILE = ["compile", "sentiment", "--optimizer", "reflective", "--out", "a.json"]


@pytest.mark.parametrize(("argv", "words"), [
    (["eval", "sentiment", "--limit", "0"], "argument --limit: expected a positive integer, got 0"),
    (["eval", "sentiment", "--limit", "-3"], "argument --limit: expected a positive integer, got -3"),
    (["eval", "sentiment", "--limit", "1e3"], "expected a positive integer, got '1e3'"),
    (["eval", "sentiment", "--threads", "0"], "argument --threads: expected a positive integer, got 0"),
    (["eval", "sentiment", "--max-tokens", "0"], "argument --max-tokens: expected a positive integer, got 0"),
    (["eval", "sentiment", "--temperature", "-1"], "unrecognized arguments: --temperature -1"),
    (["eval", "sentiment", "--typed-outputs", "yaml"], "argument --typed-outputs: invalid choice: 'yaml'"),
    ([*COMPILE, "--budget", "0"], "argument --budget: expected a positive integer, got 0"),
    ([*COMPILE, "--budget", "-5"], "argument --budget: expected a positive integer, got -5"),
    ([*COMPILE, "--train-size", "0"], "argument --train-size: expected a positive integer, got 0"),
    ([*COMPILE, "--val-size", "0"], "argument --val-size: expected a positive integer, got 0"),
    ([*COMPILE, "--seed", "x"], "argument --seed: invalid int value: 'x'"),
    (["compile", "sentiment", "--out", "a.json"], "the following arguments are required: --optimizer"),
    (["run", "a.json", "--input", "[1]"], "expected a JSON object"),
    (["run", "a.json", "--input", "{nope"], "not valid JSON"),
    (["run", "a.json"], "one of the arguments --input --inputs is required"),
    (["eval"], "give a TASK name, or both --train FILE and --test FILE"),
    (["eval", "--train", "x.jsonl"], "give a TASK name, or both --train FILE and --test FILE"),
    (["eval", "--test", "x.jsonl"], "give a TASK name, or both --train FILE and --test FILE"),
    (["eval", "sentiment", "--train", "x.jsonl", "--test", "y.jsonl"], "either TASK or --train/--test, not both"),
    (["nonsense"], "invalid choice: 'nonsense'"),
])
def test_usage_errors_exit_2_with_one_line(capsys, argv, words):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2, argv
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("honed") and "Traceback" not in err, err
    assert words in err and "--help`)" in err


def _bad_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": 5, "output": "b"}\n')
    return bad


def _one_label(tmp_path):
    path = tmp_path / "one.jsonl"
    path.write_text('{"input": "a", "output": "b"}\n{"input": "c", "output": "b"}\n')
    return path


def _not_an_artifact(tmp_path):
    path = tmp_path / "notes.json"
    path.write_text('{"hello": "world"}')
    return path


@pytest.mark.parametrize(("argv", "words"), [
    (["eval", "no_such_task", "--json"], "unknown task 'no_such_task'; bundled tasks: active_to_passive"),
    (["compile", "no_such_task", "--optimizer", "reflective", "--out", "{tmp}/a.json"], "unknown task"),
    (["compile", "sentiment", "--optimizer", "nope", "--out", "{tmp}/a.json"], "unknown optimizer 'nope'"),
    # an --out that cannot be written is refused before the compile spends anything (no model call is allowed here)
    (["compile", "sentiment", "--optimizer", "reflective", "--out", "{tmp}"], "is a directory; give the artifact's"),
    (["compile", "sentiment", "--optimizer", "reflective", "--out", "{bad}/a.json"], "cannot create its folder"),
    (["eval", "--train", "{tmp}/missing.jsonl", "--test", "{bad}"], "missing.jsonl: file not found; check the path"),
    (["eval", "--train", "{bad}", "--test", "{bad}"], "bad.jsonl:2: field `input` must be a string, got int"),
    (["eval", "--train", "{one}", "--test", "{one}", "--program", "classify"], "at least two distinct"),
    (["eval", "bbh/navigate"], "BBH tasks are not bundled"),
    (["eval", "bbh/navigate", "--bbh-dir", "{tmp}"], "navigate.json: file not found"),
    (["eval", "sentiment", "--model", "gguf/not-a-model"], "unknown embedded model `gguf/not-a-model`"),
    (["eval", "sentiment", "--artifact", "{tmp}/missing.json"], "missing.json: file not found"),
    (["eval", "sentiment", "--artifact", "{notes}"], "missing key `schema_version`"),
    (["run", "{tmp}/missing.json", "--input", '{{"sentence": "x"}}'], "missing.json: file not found"),
    (["run", "{bad}", "--input", '{{"sentence": "x"}}'], "is not valid JSON"),
    (["report", "{tmp}/nowhere"], "no such run directory or artifact file"),
])
def test_failures_exit_1_with_one_line(capsys, tmp_path, monkeypatch, argv, words):
    monkeypatch.delenv("HONED_BBH_DIR", raising=False)
    names = {"tmp": tmp_path, "bad": _bad_file(tmp_path), "one": _one_label(tmp_path),
             "notes": _not_an_artifact(tmp_path)}
    code, out, err = run(capsys, *(arg.format(**names) for arg in argv))
    assert code == 1 and out == ""
    assert err.startswith("honed: error: ") and err.count("\n") == 1 and words in err, err


def test_an_unexpected_error_is_one_line_unless_debugging(capsys, monkeypatch):
    import honed.cli.evaluate

    def broken(*args, **kwargs):
        raise KeyError("surprise")

    monkeypatch.setattr(honed.cli.evaluate, "handle", broken)
    code, _, err = run(capsys, "eval", "sentiment")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("honed: error: unexpected KeyError: 'surprise'") and "HONED_DEBUG=1" in err
    monkeypatch.setenv("HONED_DEBUG", "1")
    with pytest.raises(KeyError, match="surprise"):
        main(["eval", "sentiment"])


def test_a_blocked_model_request_still_fails_the_test_loudly(cache_dir):
    """The catch-all must not hide a unit test that reached a real model by accident."""
    with pytest.raises(Exception) as info:
        main(["eval", "sentiment", "--limit", "1", "--cache-dir", str(cache_dir)])
    assert "blocked" in str(info.value)


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "honed eval sentiment --limit 100 --json" in capsys.readouterr().out
