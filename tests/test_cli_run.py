"""`honed run` (one input, JSONL) and `honed eval --artifact`: JSON out, one-line errors, exit codes."""

from __future__ import annotations

import json

import pytest

import honed
from honed.cli import main
from honed.cli import run as cli_run
from honed.testing import SchemaLM


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def artifact(tmp_path):
    """The sentiment task's fresh program, saved under the model the CLI runs by default."""
    honed.configure(model="gguf/smollm2-135m", cache=False)
    path = tmp_path / "sentiment.json"
    honed.save(honed.load_task("sentiment").program(), path)
    return path


@pytest.mark.model
def test_run_one_input_prints_one_json_object(capsys, artifact, cache_dir):
    code, out, err = run(capsys, "run", str(artifact), "--input", '{"sentence": "A warm, funny, lovely film."}',
                         "--cache-dir", str(cache_dir), "--max-tokens", "32")
    assert code == 0, err
    assert out.count("\n") == 1
    assert json.loads(out)["sentiment"] in ("negative", "positive")


@pytest.mark.model
def test_run_jsonl_answers_every_line_and_names_bad_ones(capsys, tmp_path, artifact, cache_dir):
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"sentence": "Dull and far too long.", "id": 7}\n'
                      '{"sentence": "oops"\n'
                      "\n"
                      '{"review": "no sentence field"}\n'
                      '{"sentence": "A delight."}\n')
    code, out, err = run(capsys, "run", str(artifact), "--inputs", str(inputs), "--cache-dir", str(cache_dir),
                         "--max-tokens", "32")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 4
    assert rows[0]["sentiment"] in ("negative", "positive") and rows[3]["sentiment"] in ("negative", "positive")
    assert rows[1] == {"error": rows[1]["error"]} and rows[1]["error"].startswith(f"{inputs}:2: not valid JSON")
    assert rows[2]["error"].startswith(f"{inputs}:4: missing field `sentence`")
    assert code == 1 and err.count("\n") == 1 and err.startswith("honed: error: 2 of 4 inputs failed")


@pytest.mark.model
def test_eval_artifact_sends_the_same_requests_as_the_program_it_saved(capsys, tmp_path, artifact, cache_dir):
    common = ("--limit", "3", "--json", "--cache-dir", str(cache_dir), "--max-tokens", "32")
    code, out, _ = run(capsys, "eval", "sentiment", *common)
    fresh = json.loads(out)
    assert code == 0 and fresh["lm_calls"] == 3
    code, out, _ = run(capsys, "eval", "sentiment", "--artifact", str(artifact), *common)
    loaded = json.loads(out)
    assert code == 0 and loaded["artifact"] == str(artifact)
    assert (loaded["lm_calls"], loaded["cache_hits"], loaded["score"]) == (0, 3, fresh["score"])

    program = honed.load(artifact)
    program.predict.signature = program.predict.signature.with_instructions("Did the critic like the film?")
    honed.save(program, tmp_path / "edited.json")
    code, out, _ = run(capsys, "eval", "sentiment", "--artifact", str(tmp_path / "edited.json"), *common)
    edited = json.loads(out)
    assert code == 0 and edited["lm_calls"] == 3 and edited["n"] == 3 and edited["parse_failures"] == 0


def test_run_input_errors(capsys, tmp_path, artifact, cache_dir):
    code, out, err = run(capsys, "run", str(artifact), "--input", '{"review": "x"}', "--cache-dir", str(cache_dir))
    assert code == 1 and out == ""
    assert err == "honed: error: --input: missing field `sentence`; the program's inputs are `sentence`\n"
    code, out, err = run(capsys, "run", str(tmp_path / "missing.json"), "--input", "{}")
    assert code == 1 and err.startswith("honed: error: artifact ") and "file not found" in err
    for argv in (["run", str(artifact), "--input", "{not json"], ["run", str(artifact), "--input", "[1]"],
                 ["run", str(artifact)], ["run", str(artifact), "--input", "{}", "--inputs", "x.jsonl"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    capsys.readouterr()


def test_run_jsonl_with_only_bad_lines_needs_no_model(capsys, tmp_path, artifact, cache_dir):
    inputs = tmp_path / "bad.jsonl"
    inputs.write_text('["a list"]\n{"text": 1}\n')
    code, out, err = run(capsys, "run", str(artifact), "--inputs", str(inputs), "--cache-dir", str(cache_dir))
    assert code == 1
    assert [json.loads(line) for line in out.splitlines()] == [
        {"error": f"{inputs}:1: must be a JSON object, got list"},
        {"error": f"{inputs}:2: missing field `sentence`; the program's inputs are `sentence`"},
    ]
    code, _, err = run(capsys, "run", str(artifact), "--inputs", str(tmp_path / "none.jsonl"))
    assert code == 1 and err == f"honed: error: {tmp_path / 'none.jsonl'}: file not found\n"


def test_a_model_other_than_the_saved_one_is_noted_on_stderr(capsys, tmp_path, cache_dir, monkeypatch):
    monkeypatch.delenv("HONED_MODEL", raising=False)
    honed.configure(model=SchemaLM(), cache=False)
    honed.save(honed.Transform(), tmp_path / "a.json")
    (tmp_path / "in.jsonl").write_text("[]\n")
    code, out, err = run(capsys, "run", str(tmp_path / "a.json"), "--inputs", str(tmp_path / "in.jsonl"),
                         "--cache-dir", str(cache_dir))
    assert code == 1 and json.loads(out)["error"].endswith("must be a JSON object, got list")
    assert err.splitlines()[0] == ("honed: note: the artifact was saved under schema/fake; running on "
                                   "gguf/smollm2-135m (pass --model to choose)")


def test_damaged_or_mismatched_artifacts_fail_with_one_line(capsys, tmp_path, artifact, cache_dir):
    data = json.loads(artifact.read_text())
    data["predictors"]["predict"]["signature"]["instructions"] = "Always answer positive."
    artifact.write_text(json.dumps(data))
    code, out, err = run(capsys, "run", str(artifact), "--input", '{"sentence": "x"}')
    assert code == 1 and out == "" and err.count("\n") == 1 and "edited or corrupted" in err

    other = tmp_path / "letters.json"
    honed.save(honed.load_task("first_word_letter").program(), other)
    code, _, err = run(capsys, "eval", "sentiment", "--artifact", str(other), "--cache-dir", str(cache_dir))
    assert code == 1 and "reads `word` but task sentiment supplies `sentence`" in err
    with pytest.raises(SystemExit) as info:
        main(["eval", "sentiment", "--artifact", str(other), "--program", "transform"])
    assert info.value.code == 2


def test_help_shows_run_examples(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "honed run sentiment.json --inputs sentences.jsonl" in capsys.readouterr().out


@pytest.mark.model
def test_an_inputs_line_over_the_cap_is_that_lines_error_and_the_others_run(capsys, tmp_path, artifact, cache_dir,
                                                                            monkeypatch):
    """`honed run --inputs` reads a line at a time under HONED_MAX_LINE_BYTES: a longer line is refused on its
    own (the file is never held whole), and the lines around it still run."""
    monkeypatch.setattr(cli_run, "MAX_LINE_BYTES", 64)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text('{"sentence": "Fine."}\n{"sentence": "' + "x" * 500 + '"}\n\n{"sentence": "Dull."}\n')
    code, out, err = run(capsys, "run", str(artifact), "--inputs", str(inputs), "--cache-dir", str(cache_dir),
                         "--max-tokens", "32")
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 3 and "sentiment" in rows[0] and "sentiment" in rows[2]
    assert rows[1] == {"error": f"{inputs}:2: longer than 64 bytes; shorten the line (or raise HONED_MAX_LINE_BYTES)"}
    assert code == 1 and err.startswith("honed: error: 1 of 3 inputs failed")
