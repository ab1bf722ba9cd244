"""A fake of Lambda's Runtime API on loopback: hands out queued events, records streamed responses byte by byte.

Enough of the API to test functions/stream/runtime.py's wire format offline: `invocation/next`, a response in
streaming mode (chunked, with a prelude and trailers), `invocation/<id>/error` and `init/error`.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PRELUDE_SEPARATOR = b"\x00" * 8


@dataclass
class StreamedReply:
    headers: dict[str, str]
    chunks: list[tuple[float, bytes]] = field(default_factory=list)  # (arrival time, bytes of one HTTP chunk)
    trailers: dict[str, str] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)

    @property
    def raw(self) -> bytes:
        return b"".join(data for _, data in self.chunks)

    @property
    def prelude(self) -> dict[str, Any]:
        return dict(json.loads(self.raw.split(PRELUDE_SEPARATOR, 1)[0]))

    @property
    def body(self) -> bytes:
        return self.raw.split(PRELUDE_SEPARATOR, 1)[1]


class FakeRuntimeApi:
    def __init__(self) -> None:
        self._events: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.replies: dict[str, StreamedReply] = {}
        self.errors: dict[str, dict[str, Any]] = {}  # request id (or "init") -> the error body and type
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                request_id, event = fake._events.get()
                body = json.dumps(event).encode()
                self.send_response(200)
                self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
                self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 60_000))
                self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:1:function:stream")
                self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                parts = self.path.strip("/").split("/")
                headers = {k.lower(): v for k, v in self.headers.items()}
                if parts[-1] == "response":
                    reply = StreamedReply(headers=headers)
                    fake.replies[parts[-2]] = reply
                    self._read_chunked(reply)
                    reply.done.set()
                else:
                    length = int(self.headers.get("Content-Length") or 0)
                    error = json.loads(self.rfile.read(length) or b"{}")
                    key = "init" if parts[-2] == "init" else parts[-2]
                    fake.errors[key] = {**error, "type": headers.get("lambda-runtime-function-error-type")}
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _read_chunked(self, reply: StreamedReply) -> None:
                while True:
                    size = int(self.rfile.readline().strip(), 16)
                    if size == 0:
                        break
                    reply.chunks.append((time.monotonic(), self.rfile.read(size)))
                    self.rfile.readline()  # the CRLF after the chunk
                while (line := self.rfile.readline().strip()) != b"":
                    name, _, value = line.decode().partition(":")
                    reply.trailers[name.strip().lower()] = value.strip()

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> FakeRuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: dict[str, Any]) -> str:
        """Queue an event; returns its request id."""
        request_id = str(uuid.uuid4())
        self._events.put((request_id, event))
        return request_id


def function_url_event(
    method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
) -> dict[str, Any]:
    """A Function URL request (payload format 2.0), as Lambda delivers it."""
    raw = json.dumps(body) if body is not None else ""
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "abc.lambda-url.us-east-1.on.aws", "content-type": "application/json", **(headers or {})},
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abc",
            "domainName": "abc.lambda-url.us-east-1.on.aws",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "requestId": str(uuid.uuid4()),
            "timeEpoch": int(time.time() * 1000),
        },
        "body": raw,
        "isBase64Encoded": False,
    }
