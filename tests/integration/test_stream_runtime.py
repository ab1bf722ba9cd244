"""The streaming function's runtime loop, on the wire, against a fake Runtime API (functions/stream/runtime.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from functions.chat.app import create_app
from functions.stream.runtime import PRELUDE_CONTENT_TYPE, RuntimeApi, run
from local.fake_openai import FakeOpenAI
from shared.container import Container, load_settings
from tests.conftest import FrozenClock
from tests.support.embedders import HashingEmbedder
from tests.support.fake_runtime_api import FakeRuntimeApi, StreamedReply, function_url_event
from tests.support.harness import Harness

POLICY = "Our support line is open from 9 to 17 on working days."


@pytest.fixture
def runtime_api() -> Iterator[FakeRuntimeApi]:
    with FakeRuntimeApi() as api:
        yield api


def serve(app: Any, api: FakeRuntimeApi, event: dict[str, Any]) -> StreamedReply:
    """Run the loop for one invocation of `event`; the reply as the Runtime API received it."""
    request_id = api.invoke(event)
    loop = threading.Thread(target=run, args=(app, RuntimeApi(api.address), 1), daemon=True)
    loop.start()
    loop.join(timeout=60)
    assert not loop.is_alive(), "the runtime loop did not finish its invocation"
    return api.replies[request_id]


def test_a_buffered_route_is_one_prelude_then_its_body(harness: Harness, runtime_api: FakeRuntimeApi) -> None:
    reply = serve(create_app(harness.container), runtime_api, function_url_event("GET", "/health"))

    assert reply.headers["lambda-runtime-function-response-mode"] == "streaming"
    assert reply.headers["content-type"] == PRELUDE_CONTENT_TYPE
    assert reply.headers["transfer-encoding"] == "chunked"
    assert reply.prelude["statusCode"] == 200 and reply.prelude["headers"]["content-type"] == "application/json"
    assert json.loads(reply.body)["status"] == "ok" and reply.trailers == {}


def test_a_streamed_chat_arrives_as_it_is_written(
    function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, clock: FrozenClock, runtime_api: FakeRuntimeApi
) -> None:
    # Given the chat app with a model that writes slowly, and a tenant with a document
    with FakeOpenAI(chunk_delay_seconds=0.05) as upstream:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
        monkeypatch.setenv("DOCUCHAT_EMBEDDER", "local")
        harness = Harness(Container(load_settings(), clock=clock), function_env)
        harness.container.embedder = HashingEmbedder()
        _, key = harness.new_tenant()
        harness.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
        harness.drain("ingestion")

        # When a streamed chat comes through the Function URL
        event = function_url_event(
            "POST",
            "/v1/chat",
            {"message": "When is the support line open?", "stream": True},
            {"authorization": f"Bearer {key}"},
        )
        reply = serve(create_app(harness.container), runtime_api, event)

    # Then the prelude says it is an event stream, and the events came in many chunks, spread out in time
    assert reply.prelude["statusCode"] == 200
    assert reply.prelude["headers"]["content-type"].startswith("text/event-stream")
    body = reply.body.decode()
    assert body.index("event: citations") < body.index("event: delta") < body.index("event: done")
    deltas = [c for _, c in reply.chunks if b"event: delta" in c]
    assert len(deltas) >= 3
    arrivals = [at for at, c in reply.chunks if b"event: delta" in c]
    assert arrivals[-1] - arrivals[0] >= 0.05 * (len(arrivals) - 2)  # not one burst at the end


async def _breaks_after_first_bytes(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"half an answer", "more_body": True})
    raise RuntimeError("the app broke mid-response")


async def _breaks_at_once(scope: dict[str, Any], receive: Any, send: Any) -> None:
    raise ValueError("broken before any byte")


def test_a_failure_after_the_first_byte_is_reported_in_the_trailers(runtime_api: FakeRuntimeApi) -> None:
    reply = serve(_breaks_after_first_bytes, runtime_api, function_url_event("GET", "/"))
    assert reply.body == b"half an answer"
    assert reply.trailers["lambda-runtime-function-error-type"] == "Runtime.RuntimeError"
    assert "lambda-runtime-function-error-body" in reply.trailers


def test_a_failure_before_any_byte_goes_to_the_error_endpoint(runtime_api: FakeRuntimeApi) -> None:
    request_id = runtime_api.invoke(function_url_event("GET", "/"))
    run(_breaks_at_once, RuntimeApi(runtime_api.address), invocations=1)
    assert runtime_api.errors[request_id]["errorType"] == "ValueError"
    assert request_id not in runtime_api.replies


def test_cookies_go_in_the_prelude_apart_from_the_headers(runtime_api: FakeRuntimeApi) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-one", b"1")]
        await send({"type": "http.response.start", "status": 201, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    reply = serve(app, runtime_api, function_url_event("GET", "/"))
    assert reply.prelude == {"statusCode": 201, "headers": {"x-one": "1"}, "cookies": ["a=1", "b=2"]}
