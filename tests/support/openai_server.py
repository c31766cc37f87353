"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests, scripted per model.

    with OpenAITestServer() as server:
        server.script("gpt-4o-mini", Fail(429), Reply("hello", input_tokens=12, output_tokens=3))
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="test")

Each request to a model takes the next step of its script; the last step
repeats. `POST /v1/chat/completions` answers plain JSON, or server-sent
events with a final usage chunk when the request asks to stream.
`POST /v1/embeddings` answers vectors hashed from the input's words and
Chinese characters (a real bag-of-words embedding: texts that share words
are close), `float` or `base64` as asked, with `usage.prompt_tokens` = one
token per word or character. Failure steps apply to both routes. Every
request is recorded, so tests can count attempts; `served(model)` counts
only the answers delivered to a client still connected, which is what a
provider bills (a client killed while waiting gets nothing and pays nothing).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import select
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Fail", "OpenAITestServer", "RecordedRequest", "Reply"]


@dataclass(frozen=True)
class Reply:
    text: str = "ok"
    input_tokens: int = 10
    output_tokens: int = 5
    finish_reason: str = "stop"
    response_model: str | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    """Streaming only: the pause before each text chunk, as a model generating at a given speed."""


@dataclass(frozen=True)
class Fail:
    status: int
    message: str = "scripted failure"
    retry_after_s: float | None = None
    delay_s: float = 0.0


Step = Reply | Fail


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    model: str
    body: dict[str, Any]
    authorization: str | None

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


class OpenAITestServer:
    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._served: dict[str, int] = {}
        self._served_log: list[tuple[float, RecordedRequest]] = []
        self._limits: dict[str, _Bucket] = {}
        self._rejected: dict[str, int] = {}
        self._scripts: dict[str, deque[Step]] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="openai-test-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def script(self, model: str, *steps: Step) -> None:
        """Replace `model`'s script: each request takes the next step; the last one repeats."""
        if not steps:
            raise ValueError("a script needs at least one step")
        with self._lock:
            self._scripts[model] = deque(steps)

    def attempts(self, model: str) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.model == model)

    def limit(self, model: str, *, per_minute: int, burst: int = 1) -> None:
        """Enforce a provider limit on `model`, as a token bucket: over it, 429 with `Retry-After`."""
        with self._lock:
            self._limits[model] = _Bucket(rate_per_s=per_minute / 60.0, capacity=float(burst), tokens=float(burst))

    def rejected(self, model: str) -> int:
        """Calls answered 429 because they went over the limit set with `limit`."""
        with self._lock:
            return self._rejected.get(model, 0)

    def _over_limit(self, model: str) -> float | None:
        """None when a call may go now; else the seconds until it could."""
        with self._lock:
            bucket = self._limits.get(model)
            if bucket is None:
                return None
            wait = bucket.take(time.monotonic())
            if wait is not None:
                self._rejected[model] = self._rejected.get(model, 0) + 1
            return wait

    def served(self, model: str) -> int:
        """Answers delivered to `model`'s callers (attempts minus failures and hung-up clients)."""
        with self._lock:
            return self._served.get(model, 0)

    def served_log(self) -> list[tuple[float, RecordedRequest]]:
        """Every answer delivered, with the `time.monotonic()` it was written at, oldest first."""
        with self._lock:
            return list(self._served_log)

    def _count_served(self, request: RecordedRequest) -> None:
        with self._lock:
            self._served[request.model] = self._served.get(request.model, 0) + 1
            self._served_log.append((time.monotonic(), request))

    def start(self) -> OpenAITestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAITestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next(self, request: RecordedRequest) -> Step:
        with self._lock:
            self.requests.append(request)
            script = self._scripts.get(request.model)
            if not script:
                return Reply()
            return script.popleft() if len(script) > 1 else script[0]


def _handler_for(server: OpenAITestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: test output stays readable."""

        def handle(self) -> None:
            # A client killed mid-call (fault tests) leaves nobody to answer.
            with contextlib.suppress(ConnectionError):
                super().handle()

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
            if self.path not in ("/v1/chat/completions", "/v1/embeddings"):
                self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                return
            recorded = RecordedRequest(self.path, str(body.get("model", "")), body, self.headers.get("Authorization"))
            over = server._over_limit(recorded.model)
            step = server._next(recorded) if over is None else Fail(429, "rate limit reached", retry_after_s=over)
            time.sleep(step.delay_s)
            if _hung_up(self.connection):
                return
            try:
                if isinstance(step, Fail):
                    headers = {"Retry-After": f"{step.retry_after_s:g}"} if step.retry_after_s is not None else {}
                    self._json(step.status, {"error": {"message": step.message, "type": "scripted"}}, headers)
                elif self.path == "/v1/embeddings":
                    self._json(200, _embeddings(recorded))
                elif recorded.stream:
                    self._sse(recorded, step)
                    server._count_served(recorded)
                else:
                    self._json(200, _completion(recorded, step))
                    server._count_served(recorded)
            except (BrokenPipeError, ConnectionResetError):
                pass  # The client gave up (a timeout test); nothing is listening any more.

        def _json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, request: RecordedRequest, reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            base = {
                "id": "chatcmpl-test",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": _model(request, reply),
            }
            pieces = _pieces(reply.text)
            for index, piece in enumerate(pieces):
                time.sleep(reply.chunk_delay_s)
                delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
                self._event({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
            self._event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reply.finish_reason}]})
            if (request.body.get("stream_options") or {}).get("include_usage"):
                self._event({**base, "choices": [], "usage": _usage(reply)})
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

        def _event(self, payload: dict[str, Any]) -> None:
            self.wfile.write(b"data: " + json.dumps(payload).encode() + b"\n\n")
            self.wfile.flush()

    return Handler


@dataclass
class _Bucket:
    rate_per_s: float
    capacity: float
    tokens: float
    updated: float = 0.0

    def take(self, now: float) -> float | None:
        if self.updated:
            self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_s)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return None
        return (1.0 - self.tokens) / self.rate_per_s


def _hung_up(connection: socket.socket) -> bool:
    """True when the client closed its end while we were "thinking" (its process was killed, say)."""
    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _completion(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": _model(request, reply),
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": reply.text}, "finish_reason": reply.finish_reason}
        ],
        "usage": _usage(reply),
    }


EMBEDDING_DIMENSIONS = 64
_FEATURE = re.compile(r"[\u3400-\u9fff]|[^\W_\u3400-\u9fff]+")


def _embeddings(request: RecordedRequest) -> dict[str, Any]:
    texts = request.body.get("input", [])
    texts = [texts] if isinstance(texts, str) else list(texts)
    dimensions = int(request.body.get("dimensions") or EMBEDDING_DIMENSIONS)
    data = []
    tokens = 0
    for index, text in enumerate(texts):
        features = _FEATURE.findall(str(text).casefold())
        tokens += max(1, len(features))
        vector = [0.0] * dimensions
        for feature in features:
            vector[
                int.from_bytes(hashlib.blake2b(feature.encode(), digest_size=4).digest(), "little") % dimensions
            ] += 1
        norm = sum(v * v for v in vector) ** 0.5 or 1.0
        vector = [v / norm for v in vector]
        if request.body.get("encoding_format") == "base64":
            embedding: Any = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
        else:
            embedding = vector
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": request.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _model(request: RecordedRequest, reply: Reply) -> str:
    return reply.response_model or request.model


def _usage(reply: Reply) -> dict[str, Any]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
        "prompt_tokens_details": {"cached_tokens": reply.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": reply.reasoning_tokens},
    }


def _pieces(text: str) -> list[str]:
    """The text in word-sized pieces, spaces kept, so joining them gives the text back."""
    pieces: list[str] = []
    for word in text.split(" "):
        pieces.append(word if not pieces else " " + word)
    return [p for p in pieces if p] or [""]
