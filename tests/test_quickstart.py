"""`honed quickstart` compiles: uncompiled score, compile, compiled score, artifact; a rerun is free."""

from __future__ import annotations

import argparse

import honed
from honed.artifact import verify
from honed.cli.main import build_parser
from honed.cli.quickstart import QUICKSTART_OPTIMIZER_MODEL, QUICKSTART_TASK, cmd_quickstart
from honed.testing import ScriptedLM


def _first_letter(messages, schema):
    word = messages[-1]["content"].strip()
    if schema and "letter" in schema.get("properties", {}):
        return {"letter": word[:1]}
    return {key: "x" for key in (schema or {}).get("properties", {"answer": None})}


def test_defaults_are_the_paper_setting_on_a_bundled_task():
    args = build_parser().parse_args(["quickstart"])
    assert (args.task, args.optimizer, args.optimizer_model) == (QUICKSTART_TASK, "behavior",
                                                                 QUICKSTART_OPTIMIZER_MODEL)
    assert args.optimizer_model == "gguf/qwen2.5-coder-1.5b" and args.budget <= 100


def test_quickstart_compiles_scores_before_and_after_and_writes_an_artifact(tmp_path, capsys):
    out = tmp_path / "q.json"
    args = argparse.Namespace(task="first_word_letter", optimizer="labeled", budget=20, limit=5, out=str(out))

    def configure():
        return honed.configure(model=ScriptedLM(_first_letter), optimizer_model=ScriptedLM(_first_letter),
                               cache_dir=tmp_path / "cache", num_threads=1)

    assert cmd_quickstart(args, configure) == 0
    first = capsys.readouterr().out
    assert "1/3 the uncompiled program on 5 test examples" in first and "3/3 the compiled program" in first
    assert "first_word_letter: 1.00 uncompiled -> 1.00 compiled" in first
    assert verify(out)["provenance"]["optimizer"] == "labeled"

    assert cmd_quickstart(args, configure) == 0
    second = capsys.readouterr().out
    assert "(0 model calls, 5 cache hits)" in second and ", 0 paid" in second
