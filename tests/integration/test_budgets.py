"""Monthly token budgets: reserved before the model, settled after, never overrun, and announced at 80%."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from shared.access.budgets import RESERVATION_LIFETIME, BudgetService, budget_period
from shared.data.limits import BudgetStore
from shared.errors import BudgetExhausted
from shared.ingestion import BUDGET_SPENT
from tests.conftest import FrozenClock
from tests.support.harness import CONCURRENT_WRITERS, Harness

POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."


class Announcements:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, int]] = []

    def budget_threshold(self, tenant_id: str, period: str, used: int, limit: int) -> None:
        self.calls.append((tenant_id, period, used, limit))


def budgets(harness: Harness, clock: FrozenClock) -> tuple[BudgetService, Announcements]:
    notices = Announcements()
    store = BudgetStore(harness.container.aws.dynamodb, harness.container.settings.usage_table)
    return BudgetService(store, notices, "Asia/Tehran", clock), notices


def set_budget(harness: Harness, tenant_id: str, tokens: int | None) -> None:
    reply = harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"limits": {"monthly_token_budget": tokens}})
    assert reply.status == 200, reply


@CONCURRENT_WRITERS
def test_concurrent_calls_near_the_limit_never_overrun_it_by_more_than_one_reservation(
    any_harness: Harness, clock: FrozenClock
) -> None:
    # Given a budget of 10,000 tokens and 64 calls at once, each reserving 400 and using 300 to 400
    service, _ = budgets(any_harness, clock)
    tenant_id, _ = any_harness.new_tenant()
    limit, reserve = 10_000, 400
    barrier = threading.Barrier(16)

    def call(number: int) -> int:
        if number < 16:
            barrier.wait()
        try:
            reservation = service.reserve(tenant_id, limit, reserve)
        except BudgetExhausted:
            return 0
        used = 300 + (number * 37) % 101
        service.settle(reservation, used)
        return used

    with ThreadPoolExecutor(max_workers=16) as pool:
        spent = list(pool.map(call, range(64)))

    # Then what was let through stayed within the budget (one reservation's worth at the very most), the rest was
    # refused, and the budget's own count is exactly what the calls used
    status = service.status(tenant_id, limit)
    assert sum(spent) <= limit + reserve, sum(spent)
    assert sum(spent) > limit - 2 * reserve  # it was used up to near the limit, not refused early
    assert status.used == sum(spent) and status.reserved == 0
    assert any(s == 0 for s in spent)


def test_a_crashed_calls_reservation_expires_and_is_given_back(any_harness: Harness, clock: FrozenClock) -> None:
    service, _ = budgets(any_harness, clock)
    tenant_id, _ = any_harness.new_tenant()
    service.reserve(tenant_id, 1_000, 900)  # never settled: the request crashed
    try:
        service.reserve(tenant_id, 1_000, 200)
        raise AssertionError("the budget should look full while the reservation holds")
    except BudgetExhausted:
        pass
    clock.advance(seconds=RESERVATION_LIFETIME.total_seconds() + 1)
    assert service.reserve(tenant_id, 1_000, 200) is not None  # released, then reserved


def test_at_80_percent_the_tenant_is_told_once_a_period(any_harness: Harness, clock: FrozenClock) -> None:
    service, notices = budgets(any_harness, clock)
    tenant_id, _ = any_harness.new_tenant()
    for _ in range(5):
        service.settle(service.reserve(tenant_id, 1_000, 200), 200)
    assert [(c[0], c[2]) for c in notices.calls] == [(tenant_id, 800)]  # once, at the 4th call
    clock.advance(days=32)
    service.settle(service.reserve(tenant_id, 1_000, 900), 850)
    assert len(notices.calls) == 2 and notices.calls[1][1] == budget_period(clock(), "Asia/Tehran")


def test_chats_are_refused_once_the_budget_is_spent_and_usage_shows_it(harness: Harness) -> None:
    # Given a tenant whose budget holds one chat's worst case (~2,250 tokens reserved: five passages) but not two
    tenant_id, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Support", "text": POLICY}, key=key)
    harness.drain("ingestion")
    set_budget(harness, tenant_id, 2_400)

    # When it chats until refused
    statuses = [harness.call("POST", "/v1/chat", {"message": "When is support open?"}, key=key) for _ in range(4)]

    # Then the refusal is a 429 with its code, the budget shows what was used, and nothing is held
    assert statuses[0].status == 200
    refused = [r for r in statuses if r.status == 429]
    assert refused and refused[0].json["error"]["code"] == "budget_exhausted" and "retry-after" in refused[0].headers
    budget = harness.call("GET", "/v1/usage", key=key).json["budget"]
    assert budget["limit"] == 2_400 and budget["reserved"] == 0
    answered = sum(
        r.json["usage"]["total_tokens"] + r.json["usage"]["embedding_tokens"] for r in statuses if r.status == 200
    )
    assert budget["used"] == answered and budget["remaining"] == 2_400 - answered
    # On the OpenAI door it is OpenAI's insufficient_quota
    body = {"model": "docuchat-extractive", "messages": [{"role": "user", "content": "more " * 2000}]}
    door = harness.call("POST", "/v1/chat/completions", body, key=key)
    assert door.status == 429 and door.json["error"]["code"] == "insufficient_quota"
    assert door.json["error"]["type"] == "insufficient_quota"


def test_an_unlimited_tenant_shows_no_limit(harness: Harness) -> None:
    _, key = harness.new_tenant()
    budget = harness.call("GET", "/v1/usage", key=key).json["budget"]
    assert budget["limit"] is None and budget["remaining"] is None and budget["used"] == 0


def test_a_spent_budget_fails_a_document_with_that_reason(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    set_budget(harness, tenant_id, 50)
    document = harness.call("POST", "/v1/documents", {"title": "Long", "text": POLICY * 20}, key=key).json
    harness.drain("ingestion")
    got = harness.call("GET", f"/v1/documents/{document['document_id']}", key=key).json
    assert got["status"] == "failed" and got["reason"] == BUDGET_SPENT, got


def test_the_80_percent_notice_reaches_the_webhook_queue_with_its_email(harness: Harness) -> None:
    # Given the service's own budgets (what chat and ingestion use), a call that passes 80% of the budget
    tenant_id, _ = harness.new_tenant()
    service = harness.container.budgets
    service.settle(service.reserve(tenant_id, 1_000, 900), 850)
    messages = queued_webhook_events(harness)
    assert [m["event"]["type"] for m in messages] == ["budget.threshold"]
    assert messages[0]["event"]["data"]["limit"] == 1_000 and "budget" in messages[0]["email"]["subject"]


def queued_webhook_events(harness: Harness) -> list[dict[str, Any]]:
    sqs = harness.container.aws.sqs
    url = harness.env["DOCUCHAT_WEBHOOKS_QUEUE_URL"]
    found = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        found += [json.loads(m["Body"]) for m in batch]
    return found
