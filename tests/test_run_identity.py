"""A run knows exactly what it ran on: both models' identities are in its settings and name its directory."""

from __future__ import annotations

import json

import pytest

from honed.models.identity import lm_identity
from honed.optimizers.ledger import SETTINGS_FILE, RunDirError, RunLedger
from honed.optimizers.run import model_settings
from honed.testing import ScriptedLM


@pytest.fixture
def gguf_file(tmp_path):
    path = tmp_path / "reflector.gguf"
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


def _settings(reflector: str) -> dict:
    return {"optimizer": "reflective", "budget": 10, **model_settings(ScriptedLM(lambda m, s: "x"), reflector)}


def test_a_changed_file_behind_the_same_model_string_is_refused_naming_what_changed(tmp_path, gguf_file):
    model = f"gguf/{gguf_file}"
    RunLedger(tmp_path / "run", _settings(model)).close()
    with gguf_file.open("ab") as handle:
        handle.write(b"\0" * 64)  # the same string now names another model
    with pytest.raises(RunDirError) as info:
        RunLedger(tmp_path / "run", _settings(model))
    message = str(info.value)
    assert "settings differ in: optimizer_model_identity" in message
    assert "optimizer_model_identity was 'gguf:sha256:" in message and ", now 'gguf:sha256:" in message


def test_identities_carry_the_endpoint_without_credentials():
    remote = ScriptedLM(lambda m, s: "x", model="openai/m")
    remote.kwargs["api_base"] = "https://user:sk-SECRET@llm.example.com:8443/v1?key=sk-QUERY"
    identity = lm_identity(remote)
    assert identity == "remote:openai/m@https://llm.example.com:8443/v1"
    remote.kwargs["api_base"] = "https://other.example.com/v1"
    assert lm_identity(remote) != identity


def test_a_run_directory_from_before_identities_were_recorded_resumes_and_gains_them(tmp_path, gguf_file):
    settings = _settings(f"gguf/{gguf_file}")
    old = {k: v for k, v in settings.items() if not k.endswith("_identity")}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / SETTINGS_FILE).write_text(json.dumps(old))
    RunLedger(tmp_path / "run", settings).close()
    stored = json.loads((tmp_path / "run" / SETTINGS_FILE).read_text())
    assert stored["optimizer_model_identity"] == settings["optimizer_model_identity"]
    # but an old run on another model string is still refused
    (tmp_path / "run" / SETTINGS_FILE).write_text(json.dumps({**old, "optimizer_model": "gguf/other"}))
    with pytest.raises(RunDirError, match="optimizer_model was 'gguf/other'"):
        RunLedger(tmp_path / "run", settings)


def test_the_default_run_dir_follows_the_model_file_not_its_name(tmp_path, gguf_file, cache_dir):
    import honed
    from honed.compiling import compile_task
    from honed.programs.tasks import task_from_files

    for split, n in (("train", 12), ("test", 2)):
        rows = [{"id": f"{split}{i}", "input": f"word {i}", "output": "yes"} for i in range(n)]
        (tmp_path / f"t.{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = task_from_files(tmp_path / "t.train.jsonl", tmp_path / "t.test.jsonl", instructions="Say yes.")
    honed.configure(model=ScriptedLM(lambda m, s: {"output": "yes"}), cache_dir=cache_dir, num_threads=1)
    reflector = f"gguf/{gguf_file}"
    first = compile_task(task, "reflective", budget=20, cache_dir=tmp_path / "c", progress=False,
                         optimizer_model=reflector).summary["run_dir"]
    with gguf_file.open("ab") as handle:
        handle.write(b"\0" * 64)
    second = compile_task(task, "reflective", budget=20, cache_dir=tmp_path / "c", progress=False,
                          optimizer_model=reflector).summary["run_dir"]
    assert first != second
