"""The OpenAI-compatible door and streaming over real HTTP: `python -m local` with a slow local model behind it.

The official openai SDK and LangChain's ChatOpenAI talk to DocuChat with a tenant key. Streams are read as they
come, so these tests see what a user sees: the first token while the model is still writing, and the usage
metered exactly even when the client hangs up after three chunks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from local.fake_openai import FakeOpenAI
from local.process import LocalProcess, add_text_document, new_tenant, wait_until_ready

ADMIN_KEY = "dca_e2e-openai-admin-0123456789"
CHUNK_DELAY = 0.15  # the model writes a word every 0.15 s
POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_delay_seconds=CHUNK_DELAY) as server:
        yield server


@pytest.fixture(scope="module")
def runtime(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    env = {
        "OPENAI_API_KEY": "sk-e2e",
        "OPENAI_BASE_URL": upstream.base_url,
        "LLM_MODEL": "gpt-4o-mini",
        "LLM_FALLBACK_MODEL": "gpt-4.1-mini",
        "LLM_CACHE_TTL": "0",
        "DOCUCHAT_EMBEDDER": "local",  # the model server's embeddings are not what these tests are about
    }
    with LocalProcess(tmp_path_factory.mktemp("openai") / "run.log", ADMIN_KEY, env=env) as process:
        yield process


@pytest.fixture(scope="module")
def tenant(runtime: LocalProcess) -> dict[str, str]:
    tenant_id, key = new_tenant(runtime.url, ADMIN_KEY, "E2E", "e2e@x.test")
    wait_until_ready(runtime.url, key, add_text_document(runtime.url, key, "Support", POLICY))
    return {"tenant_id": tenant_id, "key": key}


@pytest.fixture
def client(runtime: LocalProcess, tenant: dict[str, str]) -> openai.OpenAI:
    return openai.OpenAI(api_key=tenant["key"], base_url=f"{runtime.url}/v1", max_retries=0, timeout=60)


def metered(runtime: LocalProcess, key: str, model: str, at_least: int) -> int:
    """Tokens metered for `model`, once metering has caught up with `at_least` (or after 30 s)."""
    total = 0
    for _ in range(150):
        days = httpx.get(f"{runtime.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["days"]
        total = sum(d["total_tokens"] for d in days if d["model"] == model)
        if total >= at_least:
            break
        time.sleep(0.2)
    time.sleep(1.0)  # anything more would show as an overcount
    days = httpx.get(f"{runtime.url}/v1/usage", headers={"Authorization": f"Bearer {key}"}).json()["days"]
    return sum(d["total_tokens"] for d in days if d["model"] == model)


def test_the_openai_sdk_completes_streams_and_lists_models(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "When is the support line open?"}]
    plain = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    assert plain.model == "gpt-4o-mini" and plain.choices[0].message.content and plain.usage is not None

    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            extra_body={"docuchat": {"use_documents": True}},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0
    extension = chunks[-1].model_extra["docuchat"]  # type: ignore[index]
    assert extension["route"] == "rag" and extension["citations"][0]["title"] == "Support"
    assert [m.id for m in client.models.list()][:2] == ["gpt-4o-mini", "gpt-4.1-mini"]


def test_the_sdk_raises_what_openai_would(client: openai.OpenAI, runtime: LocalProcess) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "robot", "content": "hi"}])  # type: ignore[misc, list-item]
    assert bad.value.param == "messages[0].role"
    wrong = openai.OpenAI(api_key="dc_nope", base_url=f"{runtime.url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert refused.value.code == "invalid_api_key"


def test_langchain_chat_openai_invokes_and_streams(runtime: LocalProcess, tenant: dict[str, str]) -> None:
    from langchain_openai import ChatOpenAI

    chat = ChatOpenAI(
        model="gpt-4o-mini", api_key=tenant["key"], base_url=f"{runtime.url}/v1", max_retries=0, stream_usage=True
    )
    answer = chat.invoke("Hello from LangChain")
    assert "Hello from LangChain" in str(answer.content)
    pieces = list(chat.stream("Streaming from LangChain"))
    assert "Streaming from LangChain" in "".join(str(p.content) for p in pieces)
    assert any(p.usage_metadata for p in pieces)


def test_the_first_token_arrives_while_the_model_is_still_writing(
    runtime: LocalProcess, tenant: dict[str, str], upstream: FakeOpenAI
) -> None:
    # When a streamed chat is read as it comes, noting when the first delta arrives
    body = {"message": "When is the support line open?", "stream": True}
    first_delta: float | None = None
    names = []
    with httpx.stream(
        "POST", f"{runtime.url}/v1/chat", json=body, headers={"Authorization": f"Bearer {tenant['key']}"}, timeout=60
    ) as reply:
        assert reply.headers["content-type"].startswith("text/event-stream")
        for line in reply.iter_lines():
            if line.startswith("event: "):
                names.append(line.removeprefix("event: "))
                if names[-1] == "delta" and first_delta is None:
                    first_delta = time.monotonic()
        finished = time.monotonic()

    # Then it came long before the stream ended: the model was still writing (it writes a word each CHUNK_DELAY)
    assert names[0] == "citations" and names[-1] == "done"
    words = names.count("delta")
    assert first_delta is not None and words >= 5
    assert finished - first_delta >= CHUNK_DELAY * (words - 3)


def test_a_client_that_hangs_up_after_three_chunks_is_metered_what_the_model_served(
    runtime: LocalProcess, upstream: FakeOpenAI
) -> None:
    # Given a tenant of its own, so its usage is only this call's
    _tenant_id, key = new_tenant(runtime.url, ADMIN_KEY, "Hang", "h@x.test")
    served_before = len(upstream.served)

    # When it streams a long answer and hangs up after the third chunk
    long_question = "Please repeat after me: " + " ".join(f"word{n}" for n in range(40))
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": long_question}], "stream": True}
    received = 0
    with httpx.stream(
        "POST", f"{runtime.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as reply:
        for line in reply.iter_lines():
            if line.startswith("data: {") and "choices" in json.loads(line[6:]):
                received += 1
                if received == 3:
                    break  # leaving the block closes the connection

    # Then the model was still read to its end, and the tenant is metered exactly what it served: never 0, once
    deadline = time.monotonic() + 30
    while len(upstream.served) == served_before and time.monotonic() < deadline:
        time.sleep(0.1)
    served = upstream.served[served_before]
    expected = served["prompt_tokens"] + served["completion_tokens"]
    assert metered(runtime, key, "gpt-4o-mini", expected) == expected
