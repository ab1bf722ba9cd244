"""The streaming function's own runtime loop: the chat API, with responses streamed through the Runtime API.

Python's managed runtime cannot stream a response, and neither can Mangum. This loop takes its place (started
by `bootstrap`, the function's AWS_LAMBDA_EXEC_WRAPPER) and speaks the Runtime API directly:

1. GET  /2018-06-01/runtime/invocation/next: the next event, a Function URL request (payload format 2.0).
2. The FastAPI app (the same as the chat function's) handles it as ASGI; as it sends its response, the loop
   POSTs /2018-06-01/runtime/invocation/<id>/response with `Lambda-Runtime-Function-Response-Mode: streaming`
   and a chunked body: a JSON prelude {statusCode, headers, cookies}, 8 NUL bytes, then the body, each piece as
   soon as the app sends it.
3. A failure before the first byte is reported to /invocation/<id>/error; after it, as the HTTP trailers
   Lambda-Runtime-Function-Error-Type and -Body (Lambda cannot take back bytes already sent).

Lambda never says that the client went away, so an answer is always produced to its end (and metered).
The wire format is tested offline against a fake Runtime API (tests/support/fake_runtime_api.py).
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from shared.observability import begin_request, logger, metrics

API_VERSION = "2018-06-01"
PRELUDE_CONTENT_TYPE = "application/vnd.awslambda.http-integration-response"
PRELUDE_SEPARATOR = b"\x00" * 8
ERROR_TYPE_TRAILER = "Lambda-Runtime-Function-Error-Type"
ERROR_BODY_TRAILER = "Lambda-Runtime-Function-Error-Body"


@dataclass
class Invocation:
    request_id: str
    deadline_ms: int
    function_arn: str
    event: dict[str, Any]

    def get_remaining_time_in_millis(self) -> int:  # what handlers know of a Lambda context
        return max(0, self.deadline_ms - int(time.time() * 1000))

    @property
    def aws_request_id(self) -> str:
        return self.request_id


class RuntimeApi:
    """The Runtime API's few calls; one connection per call, as the API is on the same host."""

    def __init__(self, address: str) -> None:
        host, _, port = address.partition(":")
        self._host, self._port = host, int(port or 80)

    def _connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(self._host, self._port, timeout=None)

    def next_invocation(self) -> Invocation:
        connection = self._connection()
        connection.request("GET", f"/{API_VERSION}/runtime/invocation/next")
        response = connection.getresponse()
        body = response.read()
        trace = response.getheader("Lambda-Runtime-Trace-Id")
        if trace:
            os.environ["_X_AMZN_TRACE_ID"] = trace
        return Invocation(
            request_id=response.getheader("Lambda-Runtime-Aws-Request-Id") or "",
            deadline_ms=int(response.getheader("Lambda-Runtime-Deadline-Ms") or 0),
            function_arn=response.getheader("Lambda-Runtime-Invoked-Function-Arn") or "",
            event=json.loads(body or b"{}"),
        )

    def report_error(self, path: str, error: BaseException) -> None:
        body = json.dumps(_error_body(error)).encode()
        connection = self._connection()
        headers = {ERROR_TYPE_TRAILER: f"Runtime.{type(error).__name__}", "Content-Type": "application/json"}
        connection.request("POST", f"/{API_VERSION}/runtime/{path}", body=body, headers=headers)
        connection.getresponse().read()

    def open_stream(self, request_id: str) -> StreamedResponse:
        return StreamedResponse(self._connection(), f"/{API_VERSION}/runtime/invocation/{request_id}/response")


class StreamedResponse:
    """One invocation's response, written as it is made: prelude, separator, body pieces, end (or trailers)."""

    def __init__(self, connection: http.client.HTTPConnection, path: str) -> None:
        self._connection = connection
        self._path = path
        self.started = False

    def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        connection = self._connection
        connection.putrequest("POST", self._path, skip_accept_encoding=True)
        connection.putheader("Lambda-Runtime-Function-Response-Mode", "streaming")
        connection.putheader("Content-Type", PRELUDE_CONTENT_TYPE)
        connection.putheader("Transfer-Encoding", "chunked")
        connection.putheader("Trailer", f"{ERROR_TYPE_TRAILER}, {ERROR_BODY_TRAILER}")
        connection.endheaders()
        self.started = True
        self.write(json.dumps(_prelude(status, headers)).encode() + PRELUDE_SEPARATOR)

    def write(self, data: bytes) -> None:
        if data:
            self._connection.send(f"{len(data):X}\r\n".encode() + data + b"\r\n")

    def finish(self, error: BaseException | None = None) -> None:
        trailers = ""
        if error is not None:
            encoded = base64.b64encode(json.dumps(_error_body(error)).encode()).decode()
            trailers = f"{ERROR_TYPE_TRAILER}: Runtime.{type(error).__name__}\r\n{ERROR_BODY_TRAILER}: {encoded}\r\n"
        self._connection.send(b"0\r\n" + trailers.encode() + b"\r\n")
        self._connection.getresponse().read()


def _prelude(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """What Lambda turns into the HTTP response's status line and headers; Set-Cookie goes in `cookies`."""
    collected: dict[str, str] = {}
    cookies = []
    for raw_name, raw_value in headers:
        name, value = raw_name.decode("latin-1"), raw_value.decode("latin-1")
        if name.lower() == "set-cookie":
            cookies.append(value)
        else:
            collected[name] = f"{collected[name]}, {value}" if name in collected else value
    return {"statusCode": status, "headers": collected, "cookies": cookies}


def _error_body(error: BaseException) -> dict[str, Any]:
    return {
        "errorMessage": str(error),
        "errorType": type(error).__name__,
        "stackTrace": traceback.format_exception(type(error), error, error.__traceback__)[-10:],
    }


def asgi_scope(event: dict[str, Any], invocation: Invocation) -> dict[str, Any]:
    """The ASGI HTTP scope of a Function URL event (payload format 2.0)."""
    context = event.get("requestContext", {})
    http_info = context.get("http", {})
    headers = [(k.lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in (event.get("headers") or {}).items()]
    if event.get("cookies"):
        headers.append((b"cookie", "; ".join(event["cookies"]).encode("latin-1")))
    raw_path = event.get("rawPath") or http_info.get("path") or "/"
    host = (event.get("headers") or {}).get("host", context.get("domainName", "lambda"))
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": http_info.get("method", "GET").upper(),
        "scheme": "https",
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": (event.get("rawQueryString") or "").encode(),
        "root_path": "",
        "headers": headers,
        "client": (http_info.get("sourceIp", "0.0.0.0"), 0),
        "server": (host, 443),
        "aws.event": event,
        "aws.context": invocation,
    }


@dataclass
class _Exchange:
    """One request's ASGI conversation, written to the Runtime API as it goes."""

    body: bytes
    response: StreamedResponse
    status: int = 500
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    _body_sent: bool = False

    async def receive(self) -> dict[str, Any]:
        if self._body_sent:
            await asyncio.Event().wait()  # the request had one body; nothing more will come (no disconnects)
        self._body_sent = True
        return {"type": "http.request", "body": self.body, "more_body": False}

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.response.start(message["status"], list(message.get("headers", [])))
        elif message["type"] == "http.response.body":
            self.response.write(message.get("body", b""))


def handle(app: Callable[..., Any], api: RuntimeApi, invocation: Invocation) -> None:
    event = invocation.event
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    exchange = _Exchange(body=body, response=api.open_stream(invocation.request_id))
    begin_request()
    logger.set_correlation_id(event.get("requestContext", {}).get("requestId") or invocation.request_id)
    try:
        asyncio.run(app(asgi_scope(event, invocation), exchange.receive, exchange.send))
    except Exception as error:
        logger.exception("the streamed invocation failed")
        if exchange.response.started:
            exchange.response.finish(error)
        else:
            api.report_error(f"invocation/{invocation.request_id}/error", error)
        return
    finally:
        metrics.flush_metrics()
    if not exchange.response.started:  # an app that sent nothing: answer something rather than hang
        exchange.response.start(500, [(b"content-type", b"application/json")])
        exchange.response.write(b'{"error": {"code": "internal_error", "message": "no response"}}')
    exchange.response.finish()


def run(app: Callable[..., Any], api: RuntimeApi, invocations: int | None = None) -> None:
    """Serve invocations for ever (or `invocations` of them, for tests)."""
    served = 0
    while invocations is None or served < invocations:
        handle(app, api, api.next_invocation())
        served += 1


def build_app() -> Callable[..., Any]:
    from functions.chat.app import create_app
    from shared.container import Container, load_settings

    return create_app(Container(load_settings()))


def handler(event: dict[str, Any], context: Any) -> None:
    """Never called: the managed runtime's loop is replaced by `main` (see bootstrap). Named for CloudFormation."""
    raise RuntimeError("the streaming function runs its own runtime loop; AWS_LAMBDA_EXEC_WRAPPER is not set")


def main() -> None:
    api = RuntimeApi(os.environ["AWS_LAMBDA_RUNTIME_API"])
    try:
        app = build_app()
    except Exception as error:
        api.report_error("init/error", error)
        sys.exit(1)
    run(app, api)


if __name__ == "__main__":
    main()
