"""A planted API key and auth header reach the provider and nothing else: no file honed writes, no log line.

Everything runs against the fault server on 127.0.0.1 (which records the headers it received, so the
test knows the secrets were really in play). Every file under the test's directory is then searched as
raw bytes: diskcache's sqlite database and value files, the run directory, the artifact, the report.
"""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest
from fault_server import FaultServer
from films import data, program

import honed
from honed.cli import main
from honed.errors import ProviderUnavailable
from honed.optimizers import ReflectiveRefine
from honed.report import write_report
from honed.testing import fabricate

KEY = "sk-PLANTED-1234567890abcdef"
HEADER_SECRET = "tok-PLANTED-HEADER-0987654321"


pytestmark = pytest.mark.usefixtures("loopback_servers", "restore_dspy_settings")


def answer(body: dict[str, Any], schema: dict[str, Any] | None) -> Any:
    """Schema-valid answers; reflections propose an instruction long enough to become a candidate."""
    assert schema is not None
    if "new_instruction" in schema["properties"]:
        return {"cause": "always positive", "explains": [1], "new_instruction": "Read the whole sentence first.",
                "show_examples": True}
    return fabricate(schema)


def files_holding(secret: str, root: Path) -> list[str]:
    """Every file under `root` whose bytes contain `secret` (as UTF-8, or as UTF-16 the way sqlite may)."""
    needles = [secret.encode(), secret.encode("utf-16-le")]
    return [str(path) for path in sorted(root.rglob("*"))
            if path.is_file() and any(needle in path.read_bytes() for needle in needles)]


def written_files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def test_planted_secrets_reach_the_provider_and_no_file_or_log(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    caplog.set_level(logging.INFO)  # more than anything shows by default (WARNING)
    with FaultServer(answer=answer) as server:
        honed.configure(model="openai/fake", api_base=server.api_base, api_key=KEY, cache_dir=tmp_path / "cache",
                        typed_outputs="json_schema", num_threads=1, extra_headers={"X-Api-Token": HEADER_SECRET})
        report = honed.evaluate(program(), data(4), honed.ExactMatch("sentiment"), progress=True)
        optimizer = ReflectiveRefine(honed.ExactMatch("sentiment"), budget=40, minibatch=4, max_rounds=1,
                                     progress=True)
        compiled = optimizer.compile(program(), trainset=data(8), valset=data(4, offset=100),
                                     run_dir=tmp_path / "run")
        honed.save(compiled, tmp_path / "artifact.json", provenance={"task": "films", "api_key": KEY})
        write_report(tmp_path / "run", tmp_path / "report.html")
        write_report(tmp_path / "artifact.json", tmp_path / "artifact-report.html")
    captured = capsys.readouterr()

    # The secrets were in play: every request carried them, and the compile really ran.
    assert server.requests and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in server.requests)
    assert all(r.headers.get("X-Api-Token") == HEADER_SECRET for r in server.requests)
    assert report.lm_calls == 4 and optimizer.result.details.claims >= 1
    files = written_files(tmp_path)
    assert {"run/settings.json", "run/ledger.jsonl", "artifact.json", "report.html", "artifact-report.html"} <= files
    assert any(name.startswith("cache/") and name.endswith("cache.db") for name in files), files  # diskcache's sqlite

    for secret in (KEY, HEADER_SECRET):
        assert files_holding(secret, tmp_path) == []
    shown = caplog.text + captured.out + captured.err  # log records, progress bars, litellm's own printing
    assert "compile" in captured.err  # the progress bars were captured
    assert KEY not in shown and HEADER_SECRET not in shown


def test_the_api_key_stays_out_of_debug_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """Even litellm's and the OpenAI SDK's DEBUG request dumps mask the Authorization header.

    (They print *other* headers verbatim: a secret in `extra_headers` shows in DEBUG logs, which only a user
    who turns DEBUG on for those libraries sees. honed never does.)
    """
    caplog.set_level(logging.DEBUG)
    with FaultServer(answer=answer) as server:
        honed.configure(model="openai/fake", api_base=server.api_base, api_key=KEY, cache_dir=tmp_path / "cache",
                        typed_outputs="json_schema", num_threads=1)
        report = honed.evaluate(program(), data(2), honed.ExactMatch("sentiment"), progress=False)
    captured = capsys.readouterr()
    assert report.lm_calls == 2 and server.requests[0].headers.get("Authorization") == f"Bearer {KEY}"
    assert any(r.levelno == logging.DEBUG and r.name.startswith(("LiteLLM", "openai")) for r in caplog.records)
    assert KEY not in caplog.text + captured.out + captured.err


def test_the_cli_keeps_an_environment_key_out_of_its_output_and_files(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    rows = [{"input": e.sentence, "output": e.sentiment} for e in data(12)]
    train.write_text("".join(json.dumps(row) + "\n" for row in rows[:9]), encoding="utf-8")
    test.write_text("".join(json.dumps(row) + "\n" for row in rows[9:]), encoding="utf-8")
    with FaultServer(answer=answer) as server:
        common = ["--train", str(train), "--test", str(test), "--model", "openai/fake", "--api-base", server.api_base,
                  "--typed-outputs", "json_schema", "--cache-dir", str(tmp_path / "cache"), "--threads", "1"]
        assert main(["eval", *common, "--json"]) == 0
        evaluated = json.loads(capsys.readouterr().out)
        assert main(["compile", *common, "--optimizer", "reflective", "--budget", "30", "--out",
                     str(tmp_path / "artifact.json"), "--run-dir", str(tmp_path / "run"), "--json"]) == 0
        compiled = json.loads(capsys.readouterr().out)
        assert main(["report", str(tmp_path / "run"), "--out", str(tmp_path / "report.html")]) == 0
    captured = capsys.readouterr()
    assert server.requests and all(r.headers.get("Authorization") == f"Bearer {KEY}" for r in server.requests)
    assert evaluated["n"] == 3 and evaluated["errors"] == 0 and compiled["run_dir"] == str(tmp_path / "run")
    assert {"artifact.json", "run/ledger.jsonl", "report.html"} <= written_files(tmp_path)
    assert files_holding(KEY, tmp_path) == []
    assert KEY not in json.dumps(evaluated) + json.dumps(compiled) + captured.out + captured.err


def test_an_unreachable_endpoint_is_named_without_its_credentials(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    """userinfo and query strings in `api_base` may hold keys: the error names only scheme, host, port, path."""
    caplog.set_level(logging.INFO)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    honed.configure(model="openai/fake", api_base=f"http://user:{KEY}@127.0.0.1:{port}/v1?api-key={KEY}",
                    api_key=KEY, cache_dir=tmp_path / "cache", typed_outputs="json_schema", num_retries=0)
    with pytest.raises(ProviderUnavailable) as info:
        honed.evaluate(program(), data(2), honed.ExactMatch("sentiment"), progress=False)
    assert f"http://127.0.0.1:{port}/v1" in str(info.value) and "connection refused" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text
    assert files_holding(KEY, tmp_path) == []
