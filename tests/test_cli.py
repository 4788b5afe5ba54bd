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


def test_usage_errors_exit_2(capsys):
    for argv in (["eval", "sentiment", "--limit", "0"], ["eval"], ["eval", "--train", "x.jsonl"],
                 ["eval", "sentiment", "--typed-outputs", "yaml"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2, argv
    assert "usage" in capsys.readouterr().err


def test_failures_exit_1_with_one_line(capsys, tmp_path):
    code, out, err = run(capsys, "eval", "no_such_task", "--json")
    assert code == 1 and out == ""
    assert err.startswith("honed: error: unknown task") and err.count("\n") == 1
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "a", "output": "b"}\n{"input": 5, "output": "b"}\n')
    code, _, err = run(capsys, "eval", "--train", str(bad), "--test", str(bad))
    assert code == 1 and f"{bad}:2: field `input`" in err


def test_help_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "honed eval sentiment --limit 100 --json" in capsys.readouterr().out
