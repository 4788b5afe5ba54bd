"""`import honed` and a `gguf/` run open no network connection.

The check runs in a fresh child process, so nothing imported earlier by the test session (litellm
already initialised, the price map already loaded) can hide a connection made at import time.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

RESULT_PREFIX = "HONED_OFFLINE_RESULT="
N_EXAMPLES = 2

CHILD = textwrap.dedent(
    """
    import json
    import os
    import socket
    import sys

    attempts = []

    def _refuse(where, address):
        attempts.append(f"{where}: {address!r}")
        raise OSError(f"network access attempted in an offline test ({where} {address!r})")

    def _connect(self, address):
        _refuse("socket.connect", address)

    def _connect_ex(self, address):
        _refuse("socket.connect_ex", address)

    def _create_connection(address, *args, **kwargs):
        _refuse("socket.create_connection", address)

    # Installed before anything else is imported: the class attributes cover every thread and every
    # library (httpx, aiohttp, urllib, asyncio) that opens an Internet or a Unix socket.
    socket.socket.connect = _connect
    socket.socket.connect_ex = _connect_ex
    socket.create_connection = _create_connection

    cache_dir = sys.argv[1]
    cost_map_before = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")

    import honed

    import dspy

    cost_map_after = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")
    honed.configure(cache_dir=cache_dir)
    task = honed.load_task("sentiment")
    report = honed.evaluate(task.program(), task.test[:N_EXAMPLES], task.metric, progress=False)
    result = {
        "summary": report.summary(),
        "labels": task.labels,
        "predictions": [r.prediction[task.output_field] if r.prediction is not None else None
                        for r in report.results],
        "result_errors": [r.error for r in report.results if r.error],
        "model": dspy.settings.lm.model,
        "cost_map_before": cost_map_before,
        "cost_map_after": cost_map_after,
        "attempts": attempts,
    }
    print(RESULT_PREFIX + json.dumps(result), flush=True)
    sys.exit(3 if attempts else 0)
    """
).replace("N_EXAMPLES", str(N_EXAMPLES)).replace("RESULT_PREFIX", repr(RESULT_PREFIX))


def test_import_and_gguf_run_open_no_connection(tmp_path: Path) -> None:
    home, cache_dir = tmp_path / "home", tmp_path / "cache"
    home.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in {"LITELLM_LOCAL_MODEL_COST_MAP", "HONED_MODEL", "HONED_CACHE_DIR"}}
    env.update(HOME=str(home), HONED_CACHE_DIR=str(cache_dir), XDG_CACHE_HOME=str(home / ".cache"))
    script = tmp_path / "offline_child.py"
    script.write_text(CHILD)

    done = subprocess.run([sys.executable, str(script), str(cache_dir)], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)

    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    detail = f"exit {done.returncode}\nstdout:\n{done.stdout[-3000:]}\nstderr:\n{done.stderr[-3000:]}"
    assert lines, detail
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    assert result["attempts"] == [], detail
    assert done.returncode == 0, detail

    assert result["cost_map_before"] is None  # the child did not inherit it: honed set it
    assert result["cost_map_after"] == "True"
    assert result["model"] == "gguf/smollm2-135m"
    summary = result["summary"]
    assert summary["n"] == N_EXAMPLES
    assert summary["parse_failures"] == 0, result["result_errors"]
    assert summary["errors"] == 0, result["result_errors"]
    assert summary["lm_calls"] == N_EXAMPLES  # the embedded model really ran (a fresh cache)
    assert all(label in result["labels"] for label in result["predictions"]), result
    assert any(cache_dir.iterdir()), "the run wrote nothing to the configured cache directory"
