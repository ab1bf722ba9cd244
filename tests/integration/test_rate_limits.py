"""Rate limits per key: headers on every reply, 429 with Retry-After past a limit, counters shared by instances."""

from __future__ import annotations

from typing import Any

import pytest

from shared.container import Container, load_settings
from tests.conftest import FrozenClock
from tests.support.embedders import HashingEmbedder
from tests.support.harness import Harness, Response


def limit(harness: Harness, tenant_id: str, **limits: Any) -> Response:
    reply = harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"limits": limits})
    return reply


def documents(harness: Harness, key: str) -> Response:
    return harness.call("GET", "/v1/documents", key=key)


def test_every_reply_says_where_the_caller_stands_and_past_the_limit_it_is_a_429(any_harness: Harness) -> None:
    # Given a tenant allowed 3 requests a minute
    tenant_id, key = any_harness.new_tenant()
    assert limit(any_harness, tenant_id, requests_per_minute=3, requests_per_hour=100).status == 200

    # When it makes four
    replies = [documents(any_harness, key) for _ in range(4)]

    # Then the first three pass, counting down, and the fourth is refused until the minute is over
    assert [r.status for r in replies] == [200, 200, 200, 429]
    assert [r.headers["x-ratelimit-remaining"] for r in replies[:3]] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit"] == "3" for r in replies)
    refused = replies[3]
    assert refused.json["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60 and refused.headers["x-ratelimit-remaining"] == "0"


def test_the_window_starts_afresh_and_the_hour_limit_counts_too(harness: Harness, clock: FrozenClock) -> None:
    tenant_id, key = harness.new_tenant()
    limit(harness, tenant_id, requests_per_minute=2, requests_per_hour=3)
    assert [documents(harness, key).status for _ in range(3)] == [200, 200, 429]
    clock.advance(minutes=1)
    assert documents(harness, key).status == 200  # a new minute
    hour_full = documents(harness, key)  # the hour's third was used: the hour limit refuses
    assert hour_full.status == 429 and int(hour_full.headers["retry-after"]) > 60


def test_two_instances_share_the_counters(any_harness: Harness, clock: FrozenClock) -> None:
    # Given a second function instance: its own container, its own clients, the same tables
    tenant_id, key = any_harness.new_tenant()
    limit(any_harness, tenant_id, requests_per_minute=4)
    second = Container(load_settings(), clock=clock)
    second.embedder = HashingEmbedder()
    principal = second.authenticator.tenant(key)

    # When each counts requests of the same key
    any_harness.container.rate_limiter.check(any_harness.container.authenticator.tenant(key))
    second.rate_limiter.check(principal)
    any_harness.container.rate_limiter.check(any_harness.container.authenticator.tenant(key))
    status = second.rate_limiter.check(principal)

    # Then both saw the same count, and the next one, wherever it goes, is refused
    assert status is not None and status.remaining == 0
    assert documents(any_harness, key).status == 429


def test_a_key_can_be_tighter_than_its_tenant_and_unlimited_means_no_counting(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    limit(harness, tenant_id, requests_per_minute=100)
    tight = harness.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", {"limits": {"requests_per_minute": 1}})
    tight_key = tight.json["api_key"]
    assert [documents(harness, tight_key).status for _ in range(2)] == [200, 429]

    # A tenant made unlimited: no limit headers, no counter
    limit(harness, tenant_id, requests_per_minute=None, requests_per_hour=None)
    loose = harness.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", {}).json["api_key"]
    reply = documents(harness, loose)
    assert reply.status == 200 and "x-ratelimit-limit" not in reply.headers


@pytest.mark.parametrize(
    "limits",
    [
        {"requests_per_minute": -1},
        {"requests_per_minute": 0},
        {"requests_per_hour": 10**12},
        {"monthly_token_budget": "a lot"},
        {"requests_per_day": 5},
    ],
)
def test_absurd_limits_are_refused(harness: Harness, limits: dict[str, Any]) -> None:
    tenant_id, _ = harness.new_tenant()
    reply = limit(harness, tenant_id, **limits)
    assert reply.status == 422 and reply.json["error"]["code"] == "validation_failed", reply


def test_the_openai_door_answers_a_rate_limit_in_openais_shape(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    limit(harness, tenant_id, requests_per_minute=1)
    body = {"model": "docuchat-extractive", "messages": [{"role": "user", "content": "hi"}]}
    assert harness.call("POST", "/v1/chat/completions", body, key=key).status == 200
    refused = harness.call("POST", "/v1/chat/completions", body, key=key)
    assert refused.status == 429 and "retry-after" in refused.headers
    assert refused.json["error"]["code"] == "rate_limit_exceeded" and refused.json["error"]["type"] == "requests"


def test_the_rate_check_costs_one_dynamodb_write(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    limit(harness, tenant_id, requests_per_minute=50, requests_per_hour=500)
    documents(harness, key)  # the key's last_used_at is written on its first use; not again for minutes
    calls: list[str] = []
    events = harness.container.aws.dynamodb.meta.events
    record = lambda model, **_: calls.append(model.name)  # noqa: E731
    events.register("before-call.dynamodb", record)
    try:
        documents(harness, key)
    finally:
        events.unregister("before-call.dynamodb", record)
    writes = [c for c in calls if c in ("UpdateItem", "PutItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")]
    assert writes == ["UpdateItem"], calls
