"""The OpenAI path: the official client, driven against a local OpenAI-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.fake_openai import FakeOpenAI
from shared.container import Container, load_settings
from tests.support.harness import Harness

POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def llm_harness(
    function_env: dict[str, str], openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, clock
) -> Harness:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-key")
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("LLM_MODEL", "gpt-4o-mini")
    monkeypatch.setenv("LLM_MAX_RETRIES", "2")
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "5")
    return Harness(Container(load_settings(), clock=clock), function_env)


def asked_about_the_policy(harness: Harness) -> tuple[str, Any]:
    """A new tenant with the support policy as its document, asking when the line is open: its key, the reply."""
    _, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    harness.drain("ingestion")
    return key, harness.call("POST", "/v1/chat", {"message": "When is the support line open?"}, key=key)


def chat_requests(server: FakeOpenAI) -> list[dict]:
    return [body for path, body, _ in server.requests if path == "/v1/chat/completions"]


def test_the_model_answers_from_the_documents_and_its_usage_is_metered(
    llm_harness: Harness, openai_server: FakeOpenAI
) -> None:
    # Given a tenant with a document, When the tenant asks
    key, reply = asked_about_the_policy(llm_harness)

    # Then the model got the system prompt and the numbered passage, and its answer and usage come back
    assert reply.status == 200, reply
    sent = chat_requests(openai_server)[-1]
    assert sent["model"] == "gpt-4o-mini"
    assert sent["messages"][0]["role"] == "system"
    assert (
        '<document index="1" title="Support">\nOur support line is open from 9 to 17' in sent["messages"][-1]["content"]
    )
    assert reply.json["model"] == "gpt-4o-mini" and reply.json["route"] == "rag"
    assert "9 to 17" in reply.json["answer"]
    assert reply.json["citations"][0]["title"] == "Support"
    assert reply.json["usage"]["input_tokens"] > 0 and reply.json["usage"]["output_tokens"] > 0

    # And the question and the document were embedded by OpenAI's embeddings endpoint, in one call each
    embedding_calls = [body for path, body, _ in openai_server.requests if path == "/v1/embeddings"]
    assert [call["input"] for call in embedding_calls][1] == ["When is the support line open?"]
    assert all(call["model"] == "text-embedding-3-small" for call in embedding_calls)
    assert reply.json["usage"]["embedding_tokens"] > 0

    # And the metered tokens are the ones the models reported, per model
    llm_harness.drain("usage")
    usage = llm_harness.call("GET", "/v1/usage", key=key).json
    by_model = {day["model"]: day["total_tokens"] for day in usage["days"]}
    assert by_model["gpt-4o-mini"] == reply.json["usage"]["total_tokens"]
    assert by_model["text-embedding-3-small"] > reply.json["usage"]["embedding_tokens"]  # document + question


def test_the_client_retries_a_passing_upstream_failure(llm_harness: Harness, openai_server: FakeOpenAI) -> None:
    _, key = llm_harness.new_tenant()
    openai_server.fail_next(1, status=500)
    reply = llm_harness.call("POST", "/v1/chat", {"message": "hello", "use_documents": False}, key=key)
    assert reply.status == 200 and reply.json["route"] == "direct" and reply.json["model"] == "gpt-4o-mini"
    assert len(chat_requests(openai_server)) == 2  # the failure, then the retry


def test_when_the_model_is_down_the_extractive_responder_answers_and_says_so(
    llm_harness: Harness, openai_server: FakeOpenAI
) -> None:
    # Given every chat model of the chain failing, more often than the router retries
    _, key = llm_harness.new_tenant()
    llm_harness.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    llm_harness.drain("ingestion")
    for model in ("gpt-4o-mini", "gpt-4.1-mini"):
        openai_server.fail_model(model, status=503)

    # When the tenant asks
    reply = llm_harness.call("POST", "/v1/chat", {"message": "When is the support line open?"}, key=key)

    # Then it still gets an answer from its documents, marked as degraded, never a 5xx
    assert reply.status == 200, reply
    assert reply.json["route"] == "degraded" and reply.json["model"] == "docuchat-extractive"
    assert "9 to 17" in reply.json["answer"]
    # Each model of the chain (LLM_MODEL, then the stage's fallback) got its first try and two retries
    assert [body["model"] for body in chat_requests(openai_server)] == ["gpt-4o-mini"] * 3 + ["gpt-4.1-mini"] * 3


def test_readiness_names_the_model_and_the_endpoint(llm_harness: Harness, openai_server: FakeOpenAI) -> None:
    ready = llm_harness.call("GET", "/health/ready")
    assert ready.status == 200
    assert (
        ready.json["checks"]["llm"].startswith("openai (gpt-4o-mini")
        and openai_server.base_url in ready.json["checks"]["llm"]
    )


def test_the_embeddings_and_the_chat_model_share_one_connection_pool(
    llm_harness: Harness, openai_server: FakeOpenAI
) -> None:
    # Given a question answered with the key (embedded, then answered)
    _, reply = asked_about_the_policy(llm_harness)
    assert reply.status == 200 and reply.json["route"] == "rag", reply

    # Then both OpenAI clients, each with its own timeout and retries, sent through the container's one pool
    container = llm_harness.container
    pool = container.openai_connections.pool()
    router = container.model_router
    assert router is not None
    embeddings_client, chat_client = container.embedder._client, router._upstream._client
    assert embeddings_client._client is pool and chat_client._client is pool
    assert embeddings_client.max_retries != chat_client.max_retries  # settings.embedding_max_retries vs 0
    assert {path for path, _, _ in openai_server.requests} >= {"/v1/embeddings", "/v1/chat/completions"}
