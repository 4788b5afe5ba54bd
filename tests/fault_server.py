"""A fault-injecting OpenAI-compatible chat-completions server on 127.0.0.1, for offline reliability tests.

litellm's `openai/<name>` route with `api_base=server.api_base` talks to it like to any OpenAI-compatible
endpoint. Each chat request is answered by the next action of a *schedule* (a list consumed in order,
then `default`; or a function of the request), so a test decides exactly which call fails and how:

- `ok`: a valid answer; its content is `answer(body, schema)` (default: `honed.testing.fabricate` of the
  requested `response_format` schema), serialized as JSON.
- `429` (with `Retry-After: 0`), `500`, `503`: an OpenAI-style error body with that status.
- `garbage`: status 200 with a body that is not JSON.
- `malformed`: a valid envelope whose content is not JSON for the schema.
- `slow`: sleeps `slow_s` (longer than the client's timeout), then answers.
- `hangup`: closes the connection without answering, and the server stops listening (the provider dies
  mid-request; every later request is refused).

Every request (method, path, headers, body) is recorded in `requests`, so a test can count provider calls
and check what was sent. `stop()` takes the provider away (connection refused); `start()` brings it back
on the same port. Uses only the standard library. While active, `loopback_only()` lets tests reach it
through the socket guard `conftest.py` installs (which refuses every network connection).
"""

from __future__ import annotations

import _socket
import contextlib
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from honed.models.schema import schema_from_response_format
from honed.testing import fabricate

ACTIONS = ("ok", "429", "500", "503", "garbage", "malformed", "slow", "hangup")
Schedule = Sequence[str] | Callable[["Recorded"], str]
AnswerFn = Callable[[dict[str, Any], dict[str, Any] | None], Any]


@dataclass
class Recorded:
    """One request the server received, and the action it answered with."""

    method: str
    path: str
    headers: Message  # HTTP header names are case-insensitive: `headers.get("authorization")` finds any case
    body: bytes
    index: int  # 0-based among chat-completion requests (-1 for other paths)
    action: str = ""
    at: float = field(default_factory=time.monotonic)  # when it arrived (time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def key(self) -> str:
        """The request body, canonicalized: equal keys mean the same paid call."""
        return json.dumps(self.json, sort_keys=True)


def default_answer(body: dict[str, Any], schema: dict[str, Any] | None) -> Any:
    if schema is None:
        raise AssertionError("the fault server's default answer needs a response_format schema "
                             "(configure typed_outputs='json_schema')")
    return fabricate(schema)


@dataclass
class FaultServer:
    """The server; `with FaultServer(...) as server:` starts it and stops it at the end."""

    schedule: Schedule = ()
    answer: AnswerFn = default_answer
    default: str = "ok"
    slow_s: float = 3.0
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._queue = list(self.schedule) if not callable(self.schedule) else []
        self._chat_count = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._stopped = threading.Event()

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FaultServer:
        """Listen on `port` (a free one the first time; the same one after `stop`)."""
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(self))
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._stopped.clear()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fault-server-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection: the provider is gone (connection refused)."""
        self._stopped.set()
        with self._lock:
            httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections, self._connections = set(self._connections), set()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what happened -----------------------------------------------------------------------------------
    def chat_requests(self, action: str | None = None) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests if r.index >= 0 and (action is None or r.action == action)]

    # -- answering ---------------------------------------------------------------------------------------
    def _next_action(self, record: Recorded) -> str:
        if callable(self.schedule):
            action = self.schedule(record)
        else:
            with self._lock:
                action = self._queue.pop(0) if self._queue else self.default
        if action not in ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; expected one of {ACTIONS}")
        return action

    def _record(self, handler: BaseHTTPRequestHandler, body: bytes) -> Recorded:
        chat = handler.path.rstrip("/").endswith("/chat/completions")
        with self._lock:
            index = self._chat_count if chat else -1
            self._chat_count += chat
            record = Recorded(handler.command, handler.path, handler.headers, body, index)
            self.requests.append(record)
        return record

    def _track(self, connection: socket.socket, open_: bool) -> None:
        with self._lock:
            (self._connections.add if open_ else self._connections.discard)(connection)


def _handler_for(server: FaultServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            server._track(self.connection, True)

        def finish(self) -> None:
            server._track(self.connection, False)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            server._record(self, b"")
            self._send(200, {"object": "list", "data": [{"id": "fake", "object": "model"}]})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            record = server._record(self, body)
            if record.index < 0:
                self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            # A request that slipped in while the server is going away gets no answer either.
            record.action = action = "hangup" if server._stopped.is_set() else server._next_action(record)
            if action == "hangup":
                # Stop listening first, then cut this connection: a retry can only be refused. (Safe from a
                # handler thread: serve_forever runs in its own thread, and daemon handlers are not joined.)
                self.close_connection = True
                server.stop()
                return
            if action in ("429", "500", "503"):
                kind = "rate_limit_exceeded" if action == "429" else "server_error"
                self._send(int(action), {"error": {"message": f"injected {action}", "type": kind, "code": kind}},
                           {"Retry-After": "0"} if action == "429" else None)
                return
            if action == "garbage":
                self._send_raw(200, b"<html>502 Bad Gateway</html>\x00 not json", "text/html")
                return
            if action == "slow":
                server._stopped.wait(server.slow_s)
            request = json.loads(body)
            schema = schema_from_response_format(request.get("response_format"))
            content = "{not json: this answer does not fit the schema" if action == "malformed" else \
                _as_text(server.answer(request, schema))
            self._send(200, _completion(request, content, record.index))

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

        def _send_raw(self, status: int, data: bytes, content_type: str,
                      headers: dict[str, str] | None = None) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:  # the client gave up (timeout) or the server was stopped
                self.close_connection = True

    return Handler


def _as_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer)


def _completion(request: dict[str, Any], content: str, index: int) -> dict[str, Any]:
    prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in request.get("messages", []))
    completion_tokens = len(content.split())
    return {"id": f"chatcmpl-fault-{index}", "object": "chat.completion", "created": int(time.time()),
            "model": request.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens}}


def _is_loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) and address else address
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Let sockets connect to loopback addresses (this server) while every other address stays refused.

    `conftest.py` runs unit tests inside `honed.testing.block_model_requests()`, which refuses every
    network connection. These tests must reach the fault server on 127.0.0.1 and nothing else, so this
    narrows the guard rather than lifting it: a loopback address goes to the real `connect`, anything
    else to whatever guard is installed (the embedded model stays blocked too).
    """
    guarded = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6) and _is_loopback(address):
            return _socket.socket.connect(self, address)
        return guarded(self, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = guarded  # type: ignore[method-assign]
