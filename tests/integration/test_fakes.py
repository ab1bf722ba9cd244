"""The local doubles behave like the services they stand for, seen through real clients.

FakeOpenAI is driven by the official `openai` client (so its shapes, auth and retry signals are what the SDK
expects); FakeZibal over HTTP with httpx, the way the gateway client and the payer's browser reach Zibal.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import openai
import pytest

from local.fake_openai import REPLY_PREFIX, FakeOpenAI, count_tokens
from local.fake_zibal import FakeZibal

RAG_QUESTION = (
    "Context:\n[1] Handbook: Refunds are accepted within 14 days of purchase.\n\n"
    "[2] Handbook: Orders ship from Tehran.\n\nQuestion: how long do I have to ask for a refund?"
)
CALLBACK = "http://127.0.0.1:9/v1/payments/zibal/callback?tenant=t-1"


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def fake_zibal() -> Iterator[FakeZibal]:
    with FakeZibal(merchants={"zibal", "other-shop"}) as gateway:
        yield gateway


def client_for(server: FakeOpenAI, *, max_retries: int = 0, api_key: str = "test", timeout: float = 5) -> openai.OpenAI:
    return openai.OpenAI(api_key=api_key, base_url=server.base_url, max_retries=max_retries, timeout=timeout)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# -- FakeOpenAI ----------------------------------------------------------------------------------------------------


def test_chat_completion_quotes_the_context_and_reports_usage(fake_openai: FakeOpenAI) -> None:
    # Given a RAG-shaped conversation
    messages: list[Any] = [
        {"role": "system", "content": "Answer from the context."},
        {"role": "user", "content": RAG_QUESTION},
    ]

    # When the official client asks for a completion
    completion = client_for(fake_openai).chat.completions.create(model="gpt-4o-mini", messages=messages)

    # Then it is a chat.completion for the requested model whose answer quotes the context it was given
    assert completion.object == "chat.completion"
    assert completion.model == "gpt-4o-mini"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    content = choice.message.content or ""
    assert content == (
        "[fake-llm] [1] Handbook: Refunds are accepted within 14 days of purchase. "
        "[2] Handbook: Orders ship from Tehran. Question: how long do I have to ask for a refund?"
    )
    # And usage counts about four characters a token, per message, deterministically
    assert completion.usage is not None
    expected_prompt = math.ceil(len("Answer from the context.") / 4) + math.ceil(len(RAG_QUESTION) / 4)
    assert completion.usage.prompt_tokens == expected_prompt
    assert completion.usage.completion_tokens == math.ceil(len(content) / 4)
    assert completion.usage.total_tokens == expected_prompt + completion.usage.completion_tokens
    # And the request was recorded with its bearer key
    path, body, headers = fake_openai.requests[-1]
    assert path == "/v1/chat/completions"
    assert body["messages"] == messages
    assert headers["authorization"] == "Bearer test"


def test_chat_completion_is_deterministic_and_honours_the_token_limit(fake_openai: FakeOpenAI) -> None:
    # Given the same question asked twice, then with a tight output limit, and a long question
    client = client_for(fake_openai)
    question: list[Any] = [{"role": "user", "content": "  What   is\nthe refund window?  "}]

    # When the client asks
    first = client.chat.completions.create(model="m", messages=question)
    second = client.chat.completions.create(model="m", messages=question)
    limited = client.chat.completions.create(model="m", messages=question, max_completion_tokens=3)

    long = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "word " * 100}])

    # Then the answers are identical and quote the message with its whitespace collapsed, at most 200 characters
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.choices[0].message.content == "[fake-llm] What is the refund window?"
    assert long.choices[0].message.content == REPLY_PREFIX + ("word " * 40).strip()
    # And a limit below the answer's length cuts it, as OpenAI does, with finish_reason "length"
    assert limited.choices[0].finish_reason == "length"
    assert limited.usage is not None and limited.usage.completion_tokens == 3


def test_embeddings_batch_gives_deterministic_unit_vectors_in_input_order(fake_openai: FakeOpenAI) -> None:
    # Given three texts, two of them sharing words, and one repeated
    texts = ["refund window for orders", "the refund window", "shipping from Tehran", "refund window for orders"]
    client = client_for(fake_openai)

    # When the official client embeds them (it asks for base64 unless told otherwise) and again as floats
    response = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=256)
    as_floats = client.embeddings.create(
        model="text-embedding-3-small", input=texts, dimensions=256, encoding_format="float"
    )

    # Then each input has a unit vector of the requested size, in order
    assert [item.index for item in response.data] == [0, 1, 2, 3]
    vectors = [item.embedding for item in response.data]
    assert all(len(vector) == 256 for vector in vectors)
    assert all(abs(math.sqrt(cosine(vector, vector)) - 1) < 1e-5 for vector in vectors)
    # And equal texts get equal vectors, whatever the encoding; texts sharing words are closer than unrelated ones
    assert vectors[0] == vectors[3]
    assert [item.embedding for item in as_floats.data] == vectors
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.2
    assert fake_openai.requests[0][1]["encoding_format"] == "base64"
    # And usage counts the input tokens
    assert response.model == "text-embedding-3-small"
    assert response.usage.prompt_tokens == sum(count_tokens(text) for text in texts)


def test_embeddings_default_to_1536_dimensions_for_a_single_string(fake_openai: FakeOpenAI) -> None:
    # When one string is embedded without `dimensions`
    response = client_for(fake_openai).embeddings.create(model="text-embedding-3-small", input="hello")

    # Then there is one vector of OpenAI's default size
    assert len(response.data) == 1
    assert len(response.data[0].embedding) == 1536


def test_texts_without_words_still_get_distinct_vectors(fake_openai: FakeOpenAI) -> None:
    # When two texts made only of punctuation are embedded
    response = client_for(fake_openai).embeddings.create(model="text-embedding-3-small", input=["?!", "..."])

    # Then each still has its own direction (the whole text is a feature too)
    first, second = (item.embedding for item in response.data)
    assert abs(cosine(first, first) - 1) < 1e-5
    assert first != second


def test_an_injected_500_is_retried_by_the_client_and_then_succeeds(fake_openai: FakeOpenAI) -> None:
    # Given the next request fails with a 500
    fake_openai.fail_next(1, status=500)

    # When a client that retries asks for a completion
    completion = client_for(fake_openai, max_retries=2).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )

    # Then it got an answer on the second attempt
    assert completion.choices[0].message.content == "[fake-llm] hi"
    assert [path for path, _, _ in fake_openai.requests] == ["/v1/chat/completions"] * 2


def test_an_injected_500_reaches_a_client_that_does_not_retry(fake_openai: FakeOpenAI) -> None:
    # Given the next request fails
    fake_openai.fail_next(1, status=500)

    # When a client without retries asks, then it sees OpenAI's server error shape
    with pytest.raises(openai.InternalServerError) as raised:
        client_for(fake_openai).models.list()
    assert raised.value.status_code == 500
    assert isinstance(raised.value.body, dict) and raised.value.body["type"] == "server_error"


def test_a_request_without_a_key_gets_401_in_openai_error_shape(fake_openai: FakeOpenAI) -> None:
    # When a request carries no Authorization header
    response = httpx.post(fake_openai.base_url + "/chat/completions", json={"model": "m", "messages": []})

    # Then it is refused with OpenAI's error object
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "missing_api_key"
    assert "API key" in error["message"]


def test_a_wrong_key_is_an_authentication_error_for_the_client() -> None:
    # Given a server that accepts only one key
    with FakeOpenAI(api_keys={"right-key"}) as server:
        # When the client uses another, then the SDK raises its authentication error
        with pytest.raises(openai.AuthenticationError) as raised:
            client_for(server, api_key="wrong-key").models.list()
        assert raised.value.code == "invalid_api_key"
        # And the right key works
        assert "gpt-4o-mini" in [m.id for m in client_for(server, api_key="right-key").models.list()]


def test_malformed_json_is_a_400(fake_openai: FakeOpenAI) -> None:
    # When the body is not JSON
    response = httpx.post(
        fake_openai.base_url + "/chat/completions",
        content=b"{not json",
        headers={"Authorization": "Bearer test", "Content-Type": "application/json"},
    )

    # Then it is a 400 in OpenAI's shape
    assert response.status_code == 400
    assert set(response.json()["error"]) >= {"message", "type", "code"}


def test_it_streams_with_usage_when_asked_and_can_fail_per_model_or_mid_stream(fake_openai: FakeOpenAI) -> None:
    client = client_for(fake_openai)
    messages = [{"role": "user", "content": "three little words"}]
    # A stream: the answer word by word, then the usage chunk asked for, which is what it served
    chunks = list(
        client.chat.completions.create(
            model="m", messages=messages, stream=True, stream_options={"include_usage": True}
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[fake-llm] three little words" and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == fake_openai.served[-1]["completion_tokens"]
    # One model failing leaves the others answering
    fake_openai.fail_model("broken", status=503)
    with pytest.raises(openai.InternalServerError):
        client.with_options(max_retries=0).chat.completions.create(model="broken", messages=messages)
    assert client.chat.completions.create(model="m", messages=messages).model == "m"
    # A stream can die mid-way, with an error event or a dropped connection
    fake_openai.break_next_stream(after_chunks=1, how="error")
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="m", messages=messages, stream=True))


def test_a_hung_request_times_the_client_out(fake_openai: FakeOpenAI) -> None:
    # Given the next request hangs for longer than the client waits
    fake_openai.hang_next(1, seconds=5)

    # When the client asks, then it times out instead of waiting
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client_for(fake_openai, timeout=0.3).models.list()
    assert time.monotonic() - started < 3


# -- FakeZibal -----------------------------------------------------------------------------------------------------


def zibal_post(gateway: FakeZibal, path: str, body: dict[str, Any], timeout: float = 5) -> dict[str, Any]:
    response = httpx.post(gateway.base_url + path, json=body, timeout=timeout)
    assert response.status_code == 200, response.text
    payload: dict[str, Any] = response.json()
    return payload


def request_payment(gateway: FakeZibal, amount: int = 250_000, merchant: str = "zibal") -> int:
    body = {"merchant": merchant, "amount": amount, "callbackUrl": CALLBACK, "orderId": "inv-1", "description": "d"}
    answer = zibal_post(gateway, "/v1/request", body)
    assert answer["result"] == 100, answer
    track_id: int = answer["trackId"]
    return track_id


def test_a_payment_is_requested_paid_verified_once_and_inquired(fake_zibal: FakeZibal) -> None:
    # Given a payment request for 250,000 Rials
    answer = zibal_post(
        fake_zibal,
        "/v1/request",
        {"merchant": "zibal", "amount": 250_000, "callbackUrl": CALLBACK, "orderId": "inv-1", "description": "Nov"},
    )
    assert answer["result"] == 100 and answer["message"] == "success"
    track_id = answer["trackId"]
    assert isinstance(track_id, int)

    # When the payer opens the payment page
    start = httpx.get(f"{fake_zibal.base_url}/start/{track_id}", follow_redirects=False)

    # Then the gateway redirects to the callback with Zibal's query, keeping the callback's own parameters
    assert start.status_code == 302
    location = urlsplit(start.headers["location"])
    assert location.path == "/v1/payments/zibal/callback"
    assert parse_qs(location.query) == {
        "tenant": ["t-1"],
        "success": ["1"],
        "status": ["2"],
        "trackId": [str(track_id)],
        "orderId": ["inv-1"],
    }
    inquiry = zibal_post(fake_zibal, "/v1/inquiry", {"merchant": "zibal", "trackId": track_id})
    assert (inquiry["result"], inquiry["status"]) == (100, 2)

    # When the merchant verifies it
    verified = zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": track_id})

    # Then the first verify succeeds with the payment's details
    assert verified["result"] == 100
    assert (verified["status"], verified["amount"], verified["orderId"]) == (1, 250_000, "inv-1")
    assert verified["description"] == "Nov"
    assert verified["cardNumber"] == "62741****44"
    assert isinstance(verified["refNumber"], int)
    datetime.fromisoformat(verified["paidAt"])
    # And a second verify says it was already verified, with the same fields to confirm against
    again = zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": track_id})
    assert again["result"] == 201
    assert (again["amount"], again["status"], again["orderId"]) == (250_000, 1, "inv-1")
    assert again["refNumber"] == verified["refNumber"]
    # And an inquiry reports it verified
    inquiry = zibal_post(fake_zibal, "/v1/inquiry", {"merchant": "zibal", "trackId": track_id})
    assert (inquiry["result"], inquiry["status"], inquiry["amount"]) == (100, 1, 250_000)
    assert inquiry["verifiedAt"] is not None
    assert [path for path, _ in fake_zibal.calls] == [
        "/v1/request",
        f"/start/{track_id}",
        "/v1/inquiry",
        "/v1/verify",
        "/v1/verify",
        "/v1/inquiry",
    ]


@pytest.mark.parametrize(
    ("change", "result"),
    [
        pytest.param({"merchant": "nobody"}, 102, id="unknown merchant"),
        pytest.param({"merchant": None}, 102, id="missing merchant"),
        pytest.param({"amount": 999}, 105, id="under 1,000 Rials"),
        pytest.param({"amount": "5000"}, 105, id="amount not an integer"),
        pytest.param({"amount": None}, 105, id="missing amount"),
        pytest.param({"callbackUrl": "ftp://shop.test/back"}, 106, id="callback not http"),
        pytest.param({"callbackUrl": None}, 106, id="missing callback"),
        pytest.param({"amount": 5_000_000_001}, 113, id="over the ceiling"),
    ],
)
def test_a_bad_payment_request_gets_zibals_result_code(
    fake_zibal: FakeZibal, change: dict[str, Any], result: int
) -> None:
    # Given a request that is valid except for one field
    body = {"merchant": "zibal", "amount": 10_000, "callbackUrl": CALLBACK, **change}
    body = {name: value for name, value in body.items() if value is not None}

    # When it is sent
    answer = zibal_post(fake_zibal, "/v1/request", body)

    # Then Zibal's code for that problem comes back, with a message, and no payment exists
    assert answer["result"] == result
    assert answer["message"]
    assert "trackId" not in answer
    assert fake_zibal.transactions == {}


def test_the_amount_ceiling_is_configurable() -> None:
    # Given a gateway whose ceiling is 50,000 Rials
    with FakeZibal(max_amount=50_000) as gateway:
        # Then 50,000 is accepted and 50,001 refused with 113
        assert (
            zibal_post(gateway, "/v1/request", {"merchant": "zibal", "amount": 50_000, "callbackUrl": CALLBACK})[
                "result"
            ]
            == 100
        )
        over = {"merchant": "zibal", "amount": 50_001, "callbackUrl": CALLBACK}
        assert zibal_post(gateway, "/v1/request", over)["result"] == 113


def test_verify_before_payment_is_202_and_unknown_or_foreign_track_ids_are_203(fake_zibal: FakeZibal) -> None:
    # Given a payment nobody has paid yet
    track_id = request_payment(fake_zibal)

    # When it is verified, then Zibal says it is not paid, and it stays waiting
    not_paid = zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": track_id})
    assert not_paid["result"] == 202
    assert fake_zibal.transactions[track_id].status == -1
    # And an unknown trackId, or another merchant's, is invalid
    assert zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": 12345})["result"] == 203
    assert zibal_post(fake_zibal, "/v1/verify", {"merchant": "other-shop", "trackId": track_id})["result"] == 203
    assert zibal_post(fake_zibal, "/v1/inquiry", {"merchant": "zibal", "trackId": 12345})["result"] == 203
    # And an unknown merchant is 102
    assert zibal_post(fake_zibal, "/v1/verify", {"merchant": "nobody", "trackId": track_id})["result"] == 102


def test_a_cancelled_payment_redirects_with_failure_and_cannot_be_verified(fake_zibal: FakeZibal) -> None:
    # Given a requested payment
    track_id = request_payment(fake_zibal)

    # When the payer cancels on the payment page
    start = httpx.get(f"{fake_zibal.base_url}/start/{track_id}", params={"cancel": "1"}, follow_redirects=False)

    # Then the callback says so, and verify refuses it
    query = parse_qs(urlsplit(start.headers["location"]).query)
    assert (query["success"], query["status"]) == (["0"], ["3"])
    assert zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": track_id})["result"] == 202
    assert zibal_post(fake_zibal, "/v1/inquiry", {"merchant": "zibal", "trackId": track_id})["status"] == 3


def test_pay_without_http_then_verify(fake_zibal: FakeZibal) -> None:
    # Given a payment paid through the test helper
    track_id = request_payment(fake_zibal, amount=40_000)
    callback = fake_zibal.pay(track_id)

    # Then the callback it returns is the one the browser would get, and verify succeeds
    assert parse_qs(urlsplit(callback).query)["success"] == ["1"]
    verified = zibal_post(fake_zibal, "/v1/verify", {"merchant": "zibal", "trackId": track_id})
    assert (verified["result"], verified["amount"]) == (100, 40_000)


def test_injected_failures_and_hangs(fake_zibal: FakeZibal) -> None:
    # Given the next request fails with 503
    fake_zibal.fail_next(1, status=503)
    body = {"merchant": "zibal", "amount": 10_000, "callbackUrl": CALLBACK}

    # Then that one gets a 503 and the next is served
    assert httpx.post(fake_zibal.base_url + "/v1/request", json=body).status_code == 503
    assert zibal_post(fake_zibal, "/v1/request", body)["result"] == 100

    # Given the next request hangs longer than the client waits
    fake_zibal.hang_next(1, seconds=0.5)

    # When it is sent, then the client times out
    with pytest.raises(httpx.TimeoutException):
        httpx.post(fake_zibal.base_url + "/v1/request", json=body, timeout=0.1)
    # But the gateway still did the work: a timeout leaves the outcome unknown to the caller
    deadline = time.monotonic() + 5
    while len(fake_zibal.transactions) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(fake_zibal.transactions) == 2
