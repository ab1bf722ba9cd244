"""POST /v1/chat/completions and GET /v1/models: OpenAI's shape in and out, its errors, fallback, exact metering.

The handler runs in-process behind API Gateway events (Mangum buffers a stream, so a streamed reply is read
whole here; tests/e2e reads it as it comes). The model is the local OpenAI-compatible server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from local.fake_openai import FakeOpenAI
from shared.chat.router import Breakers
from shared.container import Container, load_settings
from tests.conftest import FrozenClock
from tests.support.harness import Harness, Response

POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."
QUESTION = [{"role": "user", "content": "When is the support line open?"}]


@pytest.fixture
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def llm(
    function_env: dict[str, str], upstream: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> Harness:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", upstream.base_url)
    monkeypatch.setenv("LLM_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("LLM_FALLBACK_MODEL", "gpt-4.1-mini")
    monkeypatch.setenv("DOCUCHAT_EMBEDDER", "local")
    harness = Harness(Container(load_settings(), clock=clock), function_env)
    from tests.support.embedders import HashingEmbedder

    harness.container.embedder = HashingEmbedder()
    return harness


def complete(harness: Harness, key: str | None, body: dict[str, Any], **headers: str) -> Response:
    return harness.call("POST", "/v1/chat/completions", body, key=key, headers=headers)


def chunks_of(reply: Response) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded ([DONE] kept as the string)."""
    assert reply.headers["content-type"].startswith("text/event-stream"), reply
    payloads = [line[len("data: ") :] for line in reply.text.splitlines() if line.startswith("data: ")]
    return [p if p == "[DONE]" else json.loads(p) for p in payloads]


def metered(harness: Harness, key: str) -> dict[str, int]:
    harness.drain("usage")
    days = harness.call("GET", "/v1/usage", key=key).json["days"]
    return {day["model"]: day["total_tokens"] for day in days}


def assert_openai_error(reply: Response, status: int, param: str | None = None, code: str | None = None) -> None:
    assert reply.status == status, reply
    error = reply.json["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], error
    if param is not None:
        assert error["param"] == param, error
    if code is not None:
        assert error["code"] == code, error


def test_a_completion_is_answered_in_openais_shape_and_metered_exactly(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    reply = complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 0.1, "stop": ["\n\n"]})

    assert reply.status == 200, reply
    body = reply.json
    assert body["object"] == "chat.completion" and body["model"] == "gpt-4o-mini"
    assert body["choices"][0]["message"]["role"] == "assistant" and body["choices"][0]["finish_reason"] == "stop"
    assert body["docuchat"] == {"route": "direct", "citations": []}
    # The standard fields went through to the model
    sent = upstream.requests[-1][1]
    assert sent["temperature"] == 0.1 and sent["stop"] == ["\n\n"] and sent["messages"] == QUESTION
    # Metered exactly what the reply (and the model) reported
    assert metered(llm, key) == {"gpt-4o-mini": body["usage"]["total_tokens"]}
    assert upstream.served[-1]["prompt_tokens"] == body["usage"]["prompt_tokens"]


def test_a_streamed_completion_ends_with_usage_and_done_and_is_metered_once(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    body = {"model": "gpt-4o-mini", "messages": QUESTION, "stream": True, "stream_options": {"include_usage": True}}
    chunks = chunks_of(complete(llm, key, body))

    assert chunks[-1] == "[DONE]"
    *answer, usage_chunk, _ = chunks
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gpt-4o-mini" for c in answer)
    assert answer[-1]["choices"][0]["finish_reason"] == "stop"
    assert usage_chunk["choices"] == [] and usage_chunk["docuchat"]["route"] == "direct"
    served = upstream.served[-1]
    assert usage_chunk["usage"]["prompt_tokens"] == served["prompt_tokens"]
    assert usage_chunk["usage"]["completion_tokens"] == served["completion_tokens"]
    assert metered(llm, key) == {"gpt-4o-mini": usage_chunk["usage"]["total_tokens"]}
    # Usage was asked of the model even so; without include_usage the caller gets no usage chunk
    assert upstream.requests[-1][1]["stream_options"] == {"include_usage": True}
    plain = chunks_of(complete(llm, key, {**body, "stream_options": None}))
    assert not any(c != "[DONE]" and c.get("usage") for c in plain)
    assert plain[-2]["choices"][0]["finish_reason"] == "stop" and "docuchat" in plain[-2]


def test_documents_are_retrieved_on_request_and_their_citations_come_back(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    llm.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    llm.drain("ingestion")
    body = {"model": "gpt-4o-mini", "messages": QUESTION, "docuchat": {"use_documents": True}}

    reply = complete(llm, key, body)
    streamed = chunks_of(complete(llm, key, {**body, "stream": True}))

    assert reply.json["docuchat"]["route"] == "rag"
    assert reply.json["docuchat"]["citations"][0]["title"] == "Support"
    assert streamed[-2]["docuchat"]["citations"][0]["title"] == "Support"
    documents = [m for m in upstream.requests[-1][1]["messages"] if m["role"] == "system"]
    assert '<document index="1" title="Support">' in documents[0]["content"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-4o-mini"}, "messages"),
        ({"model": "gpt-4o-mini", "messages": []}, "messages"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": {}, "content": "hi"}]}, "messages[0].role"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 42}]}, "messages[0].content"),
        ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, None),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "max_tokens": 10_000_000}, "max_tokens"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "max_completion_tokens": 0}, "max_completion_tokens"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "temperature": 7}, "temperature"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "n": 3}, "n"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "logprobs": True}, "logprobs"),
        ({"model": "gpt-4o-mini", "messages": QUESTION, "stream_options": {"usage": True}}, "stream_options"),
        ({"messages": QUESTION}, "model"),
    ],
)
def test_malformed_requests_are_400s_naming_the_field(llm: Harness, body: dict[str, Any], param: str | None) -> None:
    _, key = llm.new_tenant()
    assert_openai_error(complete(llm, key, body), 400, param)


def test_unknown_models_wrong_keys_and_garbage_get_openais_errors(llm: Harness) -> None:
    _, key = llm.new_tenant()
    assert_openai_error(complete(llm, key, {"model": "gpt-99", "messages": QUESTION}), 404, "model", "model_not_found")
    assert_openai_error(
        complete(llm, None, {"model": "gpt-4o-mini", "messages": QUESTION}), 401, code="invalid_api_key"
    )
    assert_openai_error(complete(llm, "dc_wrong", {"model": "gpt-4o-mini", "messages": QUESTION}), 401)
    garbage = llm.call("POST", "/v1/chat/completions", raw_body="{not json", key=key)
    assert_openai_error(garbage, 400)
    assert_openai_error(llm.call("GET", "/v1/models/gpt-99", key=key), 404, code="model_not_found")


def test_the_model_list_puts_the_stages_chain_first(llm: Harness) -> None:
    _, key = llm.new_tenant()
    models = llm.call("GET", "/v1/models", key=key).json
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]][:3] == ["gpt-4o-mini", "gpt-4.1-mini", "docuchat-extractive"]
    assert llm.call("GET", "/v1/models/gpt-4.1-mini", key=key).json["id"] == "gpt-4.1-mini"


def test_a_failing_model_falls_back_and_usage_names_the_model_that_answered(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    upstream.fail_model("gpt-4o-mini", status=500)
    reply = complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION})
    assert reply.status == 200 and reply.json["model"] == "gpt-4.1-mini", reply
    assert metered(llm, key) == {"gpt-4.1-mini": reply.json["usage"]["total_tokens"]}


def test_when_every_model_fails_the_extractive_responder_answers_degraded(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    llm.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    llm.drain("ingestion")
    for model in ("gpt-4o-mini", "gpt-4.1-mini"):
        upstream.fail_model(model, status=503)
    body = {"model": "gpt-4o-mini", "messages": QUESTION, "docuchat": {"use_documents": True}}

    reply = complete(llm, key, body)
    streamed = chunks_of(complete(llm, key, {**body, "stream": True}))

    assert reply.status == 200 and reply.json["model"] == "docuchat-extractive", reply
    assert reply.json["docuchat"]["route"] == "degraded" and "9 to 17" in reply.json["choices"][0]["message"]["content"]
    assert streamed[-1] == "[DONE]" and streamed[-2]["docuchat"]["route"] == "degraded"


def test_a_request_the_model_refuses_is_the_callers_400_and_no_fallback(llm: Harness, upstream: FakeOpenAI) -> None:
    _, key = llm.new_tenant()
    upstream.fail_model("gpt-4o-mini", status=400)
    reply = complete(
        llm,
        key,
        {"model": "gpt-4o-mini", "messages": QUESTION, "tools": [{"type": "function", "function": {"name": "f"}}]},
    )
    assert_openai_error(reply, 400)
    assert [body["model"] for path, body, _ in upstream.requests if path == "/v1/chat/completions"] == ["gpt-4o-mini"]


def test_a_stream_that_breaks_off_ends_with_an_error_chunk_and_is_still_metered(
    llm: Harness, upstream: FakeOpenAI
) -> None:
    _, key = llm.new_tenant()
    upstream.break_next_stream(after_chunks=2, how="drop")
    chunks = chunks_of(complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION, "stream": True}))

    assert "[DONE]" not in chunks
    assert chunks[-1]["error"]["code"] == "upstream_failed"
    # The model reported nothing, so what it did is estimated: never zero
    assert metered(llm, key)["gpt-4o-mini"] > 0


def test_the_breaker_skips_a_failing_model_until_its_cool_down_has_passed(llm: Harness, upstream: FakeOpenAI) -> None:
    # Given a breaker with a clock of the test's, and a primary model that keeps failing
    now = [0.0]
    router = llm.container.model_router
    assert router is not None
    router.breakers = Breakers(failures=3, cooldown=30, clock=lambda: now[0])
    _, key = llm.new_tenant()
    upstream.fail_model("gpt-4o-mini", status=500)

    def models_asked() -> list[str]:
        before = len(upstream.requests)
        assert complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION}).json["model"] == "gpt-4.1-mini"
        return [body["model"] for _, body, _ in upstream.requests[before:]]

    # When it has failed three requests, the fourth skips it
    for _ in range(3):
        assert "gpt-4o-mini" in models_asked()
    assert models_asked() == ["gpt-4.1-mini"]
    assert router.breakers.states()["gpt-4o-mini"] == "open"

    # Then after the cool-down it is tried again, once, and closes when it answers
    now[0] += 31
    upstream.heal_model("gpt-4o-mini")
    assert complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION}).json["model"] == "gpt-4o-mini"
    assert router.breakers.states()["gpt-4o-mini"] == "closed"


def test_retries_wait_what_the_model_asks(llm: Harness, upstream: FakeOpenAI) -> None:
    router = llm.container.model_router
    assert router is not None
    waits: list[float] = []
    router._sleep = waits.append  # type: ignore[method-assign]
    _, key = llm.new_tenant()
    upstream.fail_next(2, status=429)  # each with retry-after-ms: 10
    assert complete(llm, key, {"model": "gpt-4o-mini", "messages": QUESTION}).json["model"] == "gpt-4o-mini"
    assert waits == [0.01, 0.01]


def test_without_a_key_the_extractive_responder_answers_and_is_the_only_model(harness: Harness) -> None:
    _, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    harness.drain("ingestion")
    models = [m["id"] for m in harness.call("GET", "/v1/models", key=key).json["data"]]
    body = {"model": "docuchat-extractive", "messages": QUESTION, "docuchat": {"use_documents": True}}
    reply = complete(harness, key, body)

    assert models == ["docuchat-extractive"]
    assert reply.json["model"] == "docuchat-extractive" and "9 to 17" in reply.json["choices"][0]["message"]["content"]
    assert_openai_error(complete(harness, key, {"model": "gpt-4o-mini", "messages": QUESTION}), 404, "model")
