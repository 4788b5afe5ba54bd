"""The remote path: the bundled model served by `llama_cpp.server`, reached through litellm's `openai/` route.

One server per module (the same GGUF that `gguf/smollm2-135m` runs in process). These tests check that
honed's adapter, `typed_outputs="llama.cpp"`, `max_tokens` and the identity-keyed cache behave on a real
OpenAI-compatible endpoint, not only on the embedded provider.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dspy
import pytest
from dspy.utils.exceptions import AdapterParseError

import honed
from honed.cache import HonedCache
from honed.models import model_identity, resolve_gguf_path

pytestmark = [pytest.mark.model, pytest.mark.usefixtures("restore_dspy_settings")]

REMOTE_MODEL = "openai/smollm2"
API_KEY = "sk-local"  # llama_cpp.server checks no key; litellm's openai route wants one
SERVER_START_TIMEOUT_S = 60.0
N_EXAMPLES = 8
MAX_TOKENS = 16
# What DSPy drops from a request before hashing it (dspy/clients/execution.py IGNORED_CACHE_KEYS).
DSPY_IGNORED_CACHE_KEYS = ["api_key", "api_base", "base_url"]


@dataclass(frozen=True)
class Server:
    port: int
    log: Path

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no server log>"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never via a proxy


def _answers(url: str) -> bool:
    try:
        with _opener().open(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _skip_if_the_server_crashes_on_a_completion(running: Server, process: subprocess.Popen) -> None:
    """Some llama-cpp-python builds segfault on their first completion on some CPUs (seen on an Intel Xeon with
    AMX, where plain `llama_cpp.Llama.create_chat_completion` dies too, while honed's own provider runs): that
    is the server's build, not the remote path under test, so the module is skipped with the reason shown."""
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}).encode()
    request = urllib.request.Request(f"{running.api_base}/chat/completions", data=body,
                                     headers={"content-type": "application/json"})
    try:
        with _opener().open(request, timeout=60):
            return
    except (urllib.error.URLError, OSError):
        pass
    try:
        code = process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        return  # alive: let the tests show what went wrong
    if code == -signal.SIGSEGV:
        pytest.skip(f"llama_cpp.server crashed (SIGSEGV) on its first completion on this CPU:\n{running.log_tail(800)}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`python -m llama_cpp.server` on a free local port, killed at teardown whatever happened."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llama_server") / "server.log"
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_gguf_path("gguf/smollm2-135m")),
               "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    # The server logs every request verbosely: write it to a file, never to an unread pipe (a full
    # pipe blocks the server before it even binds its port).
    with log.open("wb") as log_file, pytest.MonkeyPatch.context() as env:
        env.setenv("NO_PROXY", "127.0.0.1,localhost")
        env.setenv("no_proxy", "127.0.0.1,localhost")
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)
        running = Server(port, log)
        try:
            deadline = time.monotonic() + SERVER_START_TIMEOUT_S
            while not _answers(f"{running.api_base}/models"):
                if process.poll() is not None:
                    pytest.fail(f"llama_cpp.server exited with {process.returncode}:\n{running.log_tail()}")
                if time.monotonic() > deadline:
                    pytest.fail(f"llama_cpp.server did not answer within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                                f"{running.log_tail()}")
                time.sleep(0.2)
            _skip_if_the_server_crashes_on_a_completion(running, process)
            yield running
        finally:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def sentiment() -> honed.Task:
    return honed.load_task("sentiment")


def _configure_remote(api_base: str, cache_dir: Path, **options: object) -> None:
    honed.configure(model=REMOTE_MODEL, api_base=api_base, api_key=API_KEY, cache_dir=cache_dir, **options)


@dataclass(frozen=True)
class RemoteRun:
    cache_dir: Path
    lm: dspy.BaseLM
    report: honed.EvalReport


@pytest.fixture(scope="module")
def remote_sentiment(server: Server, sentiment: honed.Task,
                     tmp_path_factory: pytest.TempPathFactory) -> RemoteRun:
    """The sentiment Classify program evaluated once through the server, into a fresh cache."""
    cache_dir = tmp_path_factory.mktemp("remote_cache")
    _configure_remote(server.api_base, cache_dir, typed_outputs="llama.cpp")
    report = honed.evaluate(sentiment.program(), sentiment.test[:N_EXAMPLES], sentiment.metric, progress=False)
    return RemoteRun(cache_dir, dspy.settings.lm, report)


def test_sentiment_program_runs_through_llama_cpp_server(remote_sentiment: RemoteRun, sentiment: honed.Task,
                                                        server: Server) -> None:
    report = remote_sentiment.report
    assert report.n == N_EXAMPLES
    errors = [r.error for r in report.results if r.error]
    assert report.parse_failures == 0, errors
    assert report.errors == 0, f"{errors}\n{server.log_tail()}"
    assert report.lm_calls == N_EXAMPLES and report.cache_hits == 0  # a fresh cache: every call hit the server
    assert sentiment.labels
    for result in report.results:
        assert result.prediction is not None
        assert result.prediction[sentiment.output_field] in sentiment.labels
    assert report.score >= 0.5, [(r.example[sentiment.output_field], r.prediction) for r in report.results]
    assert report.completion_tokens > 0  # the server's usage came back through litellm


def test_schema_is_sent_in_the_llama_cpp_form(remote_sentiment: RemoteRun, sentiment: honed.Task) -> None:
    """The request carried `{"type": "json_object", "schema": ...}` and the server honoured it (bare JSON)."""
    entries = remote_sentiment.lm.history[:N_EXAMPLES]
    assert len(entries) == N_EXAMPLES
    for entry in entries:
        assert entry["model"] == REMOTE_MODEL
        response_format = entry["kwargs"]["response_format"]
        assert response_format["type"] == "json_object"
        assert response_format["schema"]["properties"][sentiment.output_field]["enum"] == sentiment.labels
        text = entry["outputs"][0]
        text = text["text"] if isinstance(text, dict) else text
        assert text.strip().startswith("{"), text


def _completion_usage(entry: dict) -> tuple[int, str | None]:
    """completion_tokens and finish_reason of one history entry (usage dict, else the raw response)."""
    usage = entry.get("usage") or {}
    tokens = usage.get("completion_tokens")
    response = entry.get("response")
    if tokens is None and getattr(response, "usage", None) is not None:
        tokens = response.usage.completion_tokens
    choices = getattr(response, "choices", None) or []
    finish_reason = getattr(choices[0], "finish_reason", None) if choices else None
    assert tokens is not None, f"no usage recorded in history entry: {entry.keys()}"
    return int(tokens), finish_reason


def _run_long_stories() -> list[dict]:
    """Ask for two long stories under the configured LM; return the history entries those calls made."""
    program = honed.Transform(input_field="word", output_field="story",
                              instructions="Write a very long story about the word.")
    lm = dspy.settings.lm
    start = len(lm.history)
    for word in ("dragon", "ocean"):
        # 16 tokens of story rarely make a complete JSON object; only the token count matters here.
        with contextlib.suppress(AdapterParseError):
            program(word=word)
    return lm.history[start:]


def _assert_capped(entries: list[dict]) -> None:
    assert entries, "no model call was recorded"
    usages = [_completion_usage(entry) for entry in entries]
    assert all(tokens <= MAX_TOKENS for tokens, _ in usages), usages
    # The cap, not the model, ended at least one answer: so the limit really applied to the decode.
    assert any(reason == "length" for _, reason in usages), usages


def test_max_tokens_reaches_the_server(server: Server, tmp_path: Path) -> None:
    _configure_remote(server.api_base, tmp_path / "cache", typed_outputs="off", max_tokens=MAX_TOKENS)
    _assert_capped(_run_long_stories())


def test_max_tokens_reaches_the_embedded_provider(tmp_path: Path) -> None:
    honed.configure(model="gguf/smollm2-135m", cache_dir=tmp_path / "cache", typed_outputs="off",
                    max_tokens=MAX_TOKENS)
    _assert_capped(_run_long_stories())


def _request(api_base: str, *, api_key: str = API_KEY, content: str = "Great film.") -> dict:
    """A cache request in the shape DSPy builds for `engine="litellm"` chat calls."""
    return {"model": REMOTE_MODEL, "messages": [{"role": "user", "content": content}], "temperature": 0.0,
            "max_tokens": 512, "api_base": api_base, "api_key": api_key,
            "_fn_identifier": "dspy.clients.lm.litellm_completion"}


def test_cache_keys_include_the_endpoint() -> None:
    cache = HonedCache(None, disk=False)
    here, there = "http://127.0.0.1:8000/v1", "http://10.0.0.7:8000/v1"

    def key(request: dict) -> str:
        return cache.cache_key(request, DSPY_IGNORED_CACHE_KEYS)

    assert model_identity(REMOTE_MODEL, here) != model_identity(REMOTE_MODEL, there)
    assert model_identity(REMOTE_MODEL, here) == model_identity(REMOTE_MODEL, here)
    assert key(_request(here)) != key(_request(there))
    assert key(_request(here)) == key(_request(here))
    assert key(_request(here)) == key(_request(here + "/"))  # the same endpoint, spelled with a slash
    assert key(_request(here)) == key(_request(here, api_key="sk-other"))  # a credential is not the model
    assert key(_request(here)) != key(_request(here, content="Awful film."))


def test_same_endpoint_hits_and_another_endpoint_misses(remote_sentiment: RemoteRun, sentiment: honed.Task,
                                                         server: Server) -> None:
    """Through real requests: the same api_base is answered from the cache, another one is not.

    `localhost` and `127.0.0.1` reach the same server, so the second endpoint can answer; its requests
    differ from the cached ones only in api_base, which DSPy's own key ignores.
    """
    examples = sentiment.test[:N_EXAMPLES]
    first = remote_sentiment.report
    _configure_remote(server.api_base, remote_sentiment.cache_dir, typed_outputs="llama.cpp")
    again = honed.evaluate(sentiment.program(), examples, sentiment.metric, progress=False)
    assert (again.lm_calls, again.cache_hits) == (0, N_EXAMPLES)
    assert [r.prediction for r in again.results] == [r.prediction for r in first.results]

    other_examples = examples[: N_EXAMPLES // 2]
    other_base = f"http://localhost:{server.port}/v1"
    _configure_remote(other_base, remote_sentiment.cache_dir, typed_outputs="llama.cpp")
    other = honed.evaluate(sentiment.program(), other_examples, sentiment.metric, progress=False)
    assert other.errors == 0, [r.error for r in other.results]
    assert (other.lm_calls, other.cache_hits) == (len(other_examples), 0)
