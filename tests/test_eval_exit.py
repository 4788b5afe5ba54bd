"""`honed eval` exits 1 when examples ended in errors (not answers), unless --allow-errors; --json still prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_server import FaultServer
from films import data

from honed.cli import main

pytestmark = pytest.mark.usefixtures("loopback_servers", "restore_dspy_settings")


def _task_files(tmp_path: Path) -> list[str]:
    rows = [{"input": e.sentence, "output": e.sentiment} for e in data(8)]
    train, test = tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows[:6]), encoding="utf-8")
    test.write_text("".join(json.dumps(r) + "\n" for r in rows[6:]), encoding="utf-8")
    return ["--train", str(train), "--test", str(test)]


@pytest.fixture
def failing_server(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FaultServer(lambda record: "500") as server:
        yield server


def _argv(tmp_path: Path, server: FaultServer, *extra: str) -> list[str]:
    return ["eval", *_task_files(tmp_path), "--model", "openai/fake", "--api-base", server.api_base,
            "--typed-outputs", "json_schema", "--cache-dir", str(tmp_path / "c"), "--threads", "1", *extra]


def test_every_example_erroring_exits_1_with_the_count(tmp_path, capsys, failing_server) -> None:
    assert main(_argv(tmp_path, failing_server, "--json")) == 1
    captured = capsys.readouterr()
    summary = json.loads(captured.out)  # the object is still printed
    assert summary["errors"] == 2 and summary["n"] == 2
    assert captured.err.count("\n") == 1 and "2 of 2 examples ended in an error" in captured.err
    assert "--allow-errors" in captured.err


def test_allow_errors_scores_them_as_wrong_and_exits_0(tmp_path, capsys, failing_server) -> None:
    assert main(_argv(tmp_path, failing_server, "--allow-errors")) == 0
    assert "other errors 2" in capsys.readouterr().out
