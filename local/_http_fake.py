"""Plumbing shared by the local HTTP fakes: a loopback server in a daemon thread, JSON in and out, fault injection.

Standard library only, so a fake starts in milliseconds (tests and the cold-start benchmark start many of them).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

LOOPBACK = "127.0.0.1"
MAX_BODY_BYTES = 16 * 1024 * 1024
# How often the serving loop checks for stop(): stop() waits up to this long (the default, 0.5 s, slows tests).
_POLL_SECONDS = 0.02


@dataclass(frozen=True)
class FakeRequest:
    method: str
    path: str  # without the query string
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON; raises ValueError (json.JSONDecodeError or UnicodeDecodeError) if it is not."""
        return json.loads(self.body.decode("utf-8"))

    def json_or_none(self) -> Any:
        try:
            return self.json()
        except ValueError:
            return None


@dataclass
class FakeResponse:
    status: int
    body: Any = None  # anything json.dumps takes; None sends an empty body
    headers: dict[str, str] = field(default_factory=dict)
    # A streamed body instead: each piece is sent (chunked) as soon as it is made. A piece of None drops the
    # connection there, without ending the body: an upstream that dies mid-stream.
    pieces: Iterable[bytes | None] | None = None


class LoopbackFake:
    """Serves `handle()` on 127.0.0.1 from a daemon thread; subclasses implement `handle` (and may `record`).

    Every request is recorded first, then the injected faults apply (hang, then fail), then `handle` answers.
    """

    def __init__(self, *, port: int = 0, delay_seconds: float = 0.0) -> None:
        self.delay_seconds = delay_seconds
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._stopping = threading.Event()
        self._faults = threading.Lock()
        self._failures: list[int] = []
        self._hangs: list[float] = []

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _QuietServer((LOOPBACK, self._requested_port), _Handler)
        server.daemon_threads = True
        server.fake = self  # type: ignore[attr-defined]
        self._server = server
        self._port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever, args=(_POLL_SECONDS,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes requests that hang, so they end without an answer
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started; call start() or use it as a context manager")
        return self._port

    @property
    def root_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """What a client of this fake is configured with; subclasses add a version prefix when theirs has one."""
        return self.root_url

    # -- fault injection ---------------------------------------------------------------------------------------

    def fail_next(self, count: int = 1, status: int = 500) -> None:
        """The next `count` requests get `status` with `failure_response`'s body instead of an answer."""
        with self._faults:
            self._failures.extend([status] * count)

    def hang_next(self, count: int = 1, seconds: float = 30.0) -> None:
        """The next `count` requests wait `seconds` before being handled as usual (a slow upstream, not a lost one).

        The work still happens after the wait, even if the client gave up: that is what a timeout means.
        """
        with self._faults:
            self._hangs.extend([seconds] * count)

    # -- hooks for subclasses ----------------------------------------------------------------------------------

    def handle(self, request: FakeRequest) -> FakeResponse:
        raise NotImplementedError

    def record(self, request: FakeRequest) -> None:
        """Called for every request, before any fault applies."""

    def failure_response(self, status: int) -> FakeResponse:
        return FakeResponse(status, {"error": {"message": f"injected failure ({status})"}})

    # -- called by the request handler, one thread per connection ----------------------------------------------

    def _respond(self, request: FakeRequest) -> FakeResponse | None:
        self.record(request)
        with self._faults:
            hang = self._hangs.pop(0) if self._hangs else 0.0
            failure = self._failures.pop(0) if self._failures else None
        wait = self.delay_seconds + hang
        if wait > 0 and self._stopping.wait(wait):
            return None
        if failure is not None:
            return self.failure_response(failure)
        return self.handle(request)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (a test's timeout, a dropped stream) is expected here, not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "LoopbackFake/1"

    def _dispatch(self) -> None:
        fake: LoopbackFake = self.server.fake  # type: ignore[attr-defined]
        if fake._stopping.is_set():  # a kept-alive connection outliving stop(): a stopped fake answers nothing
            self.close_connection = True
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(FakeResponse(413, {"error": {"message": "request body too large"}}))
            self.close_connection = True
            return
        url = urlsplit(self.path)
        request = FakeRequest(
            method=self.command,
            path=url.path,
            query=dict(parse_qsl(url.query, keep_blank_values=True)),
            headers={name.lower(): value for name, value in self.headers.items()},
            body=self.rfile.read(length) if length else b"",
        )
        response = fake._respond(request)
        if response is None:
            self.close_connection = True
            return
        self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _dispatch

    def _send(self, response: FakeResponse) -> None:
        if response.pieces is not None:
            self._send_pieces(response)
            return
        payload = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
        try:
            self.send_response(response.status)
            if response.body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test); nothing to tell it

    def _send_pieces(self, response: FakeResponse) -> None:
        assert response.pieces is not None
        try:
            self.send_response(response.status)
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.flush()
            for piece in response.pieces:
                if piece is None:  # die mid-stream: no closing chunk, the connection just goes
                    self.close_connection = True
                    return
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up mid-stream

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on `.requests` / `.calls` rather than reading access logs."""


def run_cli(
    description: str,
    default_port: int,
    build: Callable[[argparse.Namespace], LoopbackFake],
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    argv: list[str] | None = None,
) -> None:
    """`python -m local.fake_x --port N`: serve on 127.0.0.1 until Ctrl-C or SIGTERM.

    `build` gets the parsed arguments (`port`, `delay` and whatever `add_arguments` added) and returns the fake.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=default_port, help=f"port on 127.0.0.1 (default {default_port})")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before every answer")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args(argv)

    def terminate(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Both explicitly: a shell starting us in the background would otherwise leave SIGINT ignored.
    signal.signal(signal.SIGINT, terminate)
    signal.signal(signal.SIGTERM, terminate)
    fake = build(args)
    with fake:
        print(f"{type(fake).__name__} serving on {fake.base_url} (Ctrl-C stops)", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            print(f"{type(fake).__name__} stopped", file=sys.stderr)
