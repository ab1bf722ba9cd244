"""Tenants' webhooks: signed deliveries, retried on a schedule, logged, refused where they would reach inside;
and the events chat, budgets and billing send them."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.data import webhooks as webhook_data
from shared.data.messaging import Mailer
from shared.data.outbound import OutboundHttp
from shared.webhooks import service as webhook_service
from shared.webhooks.service import WebhookDeliverer
from shared.webhooks.signing import SIGNATURE_HEADER, verify
from tests.conftest import FrozenClock
from tests.support.aws import sent_emails
from tests.support.harness import Harness
from tests.support.webhook_receiver import WebhookReceiver

REAL_GETADDRINFO = socket.getaddrinfo


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as endpoint:
        yield endpoint


@pytest.fixture
def retries_come_back_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQS delays a retry by real seconds; the test's clock is frozen. The deliverer still holds each retry
    until the clock reaches its time (`not_before`), so the schedule is what the test checks."""
    monkeypatch.setattr(webhook_data, "MAX_DELAY_SECONDS", 0)


def subscribe(harness: Harness, key: str, url: str, events: list[str]) -> str:
    reply = harness.call("PUT", "/v1/webhook", {"url": url, "events": events}, key=key)
    assert reply.status == 200, reply
    return str(reply.json["secret"])


def escalate(harness: Harness, key: str) -> dict[str, Any]:
    reply = harness.call("POST", "/v1/chat", {"message": "Can I talk to a real person please?"}, key=key)
    assert reply.status == 200 and reply.json["route"] == "escalated", reply
    return reply.json


def deliveries(harness: Harness, key: str) -> list[dict[str, Any]]:
    reply = harness.call("GET", "/v1/webhook/deliveries", key=key)
    assert reply.status == 200, reply
    return list(reply.json["deliveries"])


def test_an_event_is_delivered_signed_and_logged(
    harness: Harness, receiver: WebhookReceiver, clock: FrozenClock
) -> None:
    tenant_id, key = harness.new_tenant()
    secret = subscribe(harness, key, receiver.url, ["escalation.created"])
    assert secret.startswith("whsec_")
    shown = harness.call("GET", "/v1/webhook", key=key).json
    assert shown["url"] == receiver.url and shown["secret"] is None  # the secret is shown once

    escalate(harness, key)
    assert harness.drain("webhooks") == 1

    [request] = receiver.received
    event = request.json()
    assert event["type"] == "escalation.created" and event["data"]["tenant_id"] == tenant_id
    assert request.headers["docuchat-event"] == "escalation.created"
    assert request.headers["docuchat-webhook-id"] == event["id"]
    header = request.headers[SIGNATURE_HEADER.lower()]
    now = int(clock().timestamp())
    assert verify(secret, header, request.body, now)
    assert not verify(secret, header, request.body + b" ", now)  # tampered
    assert not verify("whsec_other", header, request.body, now)  # another secret
    assert not verify(secret, header, request.body, now + 301)  # replayed later

    [logged] = deliveries(harness, key)
    assert logged["event_id"] == event["id"] and logged["status"] == "delivered"
    assert [a["status_code"] for a in logged["attempts"]] == [204]


def test_a_failing_receiver_is_retried_on_the_schedule_until_it_answers(
    harness: Harness, receiver: WebhookReceiver, clock: FrozenClock, retries_come_back_at_once: None
) -> None:
    _, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["escalation.created"])
    receiver.fail_next(2, status=500)
    escalate(harness, key)

    harness.drain("webhooks", rounds=1)
    [logged] = deliveries(harness, key)
    assert logged["status"] == "retrying" and [a["status_code"] for a in logged["attempts"]] == [500]
    first_retry = webhook_service.RETRY_AFTER[0]
    due = datetime.fromisoformat(logged["next_attempt_at"])
    assert due == clock() + timedelta(seconds=first_retry)

    # Before its time the retry waits, however often SQS hands it back
    harness.drain("webhooks", rounds=3)
    assert len(receiver.received) == 1

    clock.advance(seconds=first_retry)
    harness.drain("webhooks", rounds=1)
    assert len(receiver.received) == 2
    clock.advance(seconds=webhook_service.RETRY_AFTER[1])
    harness.drain("webhooks", rounds=1)

    [logged] = deliveries(harness, key)
    assert logged["status"] == "delivered" and logged["next_attempt_at"] is None
    assert [a["status_code"] for a in logged["attempts"]] == [500, 500, 204]
    assert len({r.json()["id"] for r in receiver.received}) == 1  # one event, three attempts
    assert harness.queued("webhooks") == 0


def test_a_receiver_that_never_answers_is_given_up_after_the_last_retry(
    harness: Harness,
    receiver: WebhookReceiver,
    clock: FrozenClock,
    retries_come_back_at_once: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(webhook_service, "RETRY_AFTER", (30, 60))
    _, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["escalation.created"])
    receiver.fail_next(10, status=503)
    escalate(harness, key)
    for wait in (0, 30, 60):
        clock.advance(seconds=wait)
        harness.drain("webhooks", rounds=1)
    [logged] = deliveries(harness, key)
    assert logged["status"] == "failed" and len(logged["attempts"]) == 3
    assert harness.queued("webhooks") == 0


def test_a_redelivered_message_does_not_post_twice(harness: Harness, receiver: WebhookReceiver) -> None:
    tenant_id, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["invoice.created"])
    message = {"tenant_id": tenant_id, "event": {"id": "w_1", "type": "invoice.created", "data": {}}, "attempt": 0}
    deliverer = harness.container.webhook_deliverer
    assert deliverer.handle(message) == "delivered"
    assert deliverer.handle(message) == "delivered"
    assert len(receiver.received) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://10.0.0.12/hook",
        "http://[fd00:ec2::254]/hook",
        "http://admin:pw@hooks.acme.example/hook",
        "gopher://hooks.acme.example/",
        "http://metadata.google.internal/computeMetadata/v1/",
    ],
)
def test_a_url_that_reaches_inside_is_refused_when_it_is_set(harness: Harness, url: str) -> None:
    _, key = harness.new_tenant()
    reply = harness.call("PUT", "/v1/webhook", {"url": url, "events": ["invoice.created"]}, key=key)
    assert reply.status in (400, 422) and reply.json["error"]["param"] == "url", reply
    assert harness.call("GET", "/v1/webhook", key=key).status == 404


def test_a_name_that_later_resolves_inside_is_refused_at_delivery_and_not_retried(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = harness.new_tenant()
    subscribe(harness, key, "https://hooks.acme.example/docuchat", ["escalation.created"])

    def resolves_inside(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "hooks.acme.example":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.12", port))]
        return REAL_GETADDRINFO(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolves_inside)
    escalate(harness, key)
    harness.drain("webhooks")
    [logged] = deliveries(harness, key)
    assert logged["status"] == "refused" and "private" in logged["attempts"][0]["error"]
    assert harness.queued("webhooks") == 0


def test_events_the_tenant_did_not_subscribe_to_are_not_sent(harness: Harness, receiver: WebhookReceiver) -> None:
    _, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["invoice.created"])
    escalate(harness, key)
    harness.drain("webhooks")
    assert receiver.received == [] and deliveries(harness, key) == []
    assert harness.call("DELETE", "/v1/webhook", key=key).status == 204
    assert harness.call("GET", "/v1/webhook", key=key).status == 404
    assert harness.call("DELETE", "/v1/webhook", key=key).status == 404


def test_a_key_without_the_webhooks_scope_cannot_set_one(harness: Harness, receiver: WebhookReceiver) -> None:
    tenant_id, _ = harness.new_tenant()
    chat_only = harness.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", {"name": "bot", "scopes": ["chat"]})
    reply = harness.call(
        "PUT", "/v1/webhook", {"url": receiver.url, "events": ["invoice.created"]}, key=chat_only.json["api_key"]
    )
    assert reply.status == 403 and "webhooks" in reply.json["error"]["message"]


def test_the_budget_notice_is_emailed_and_posted(harness: Harness, receiver: WebhookReceiver) -> None:
    tenant_id, key = harness.new_tenant(email="owner@acme.test")
    subscribe(harness, key, receiver.url, ["budget.threshold"])
    budgets = harness.container.budgets
    budgets.settle(budgets.reserve(tenant_id, 1_000, 900), 850)
    harness.drain("webhooks")
    [event] = receiver.events()
    assert event["type"] == "budget.threshold" and event["data"]["percent"] == 85
    [email] = [m for m in sent_emails() if "owner@acme.test" in m.destinations["ToAddresses"]]
    assert "85%" in email.subject


def test_billing_announces_each_invoice_once(harness: Harness, receiver: WebhookReceiver, clock: FrozenClock) -> None:
    _tenant_id, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["invoice.created"])
    harness.call("POST", "/v1/documents", {"title": "Hours", "text": "Support is open 9 to 17."}, key=key)
    harness.drain("ingestion")
    assert harness.call("POST", "/v1/chat", {"message": "When is support open?"}, key=key).status == 200
    harness.drain("usage")
    day = clock().date()
    clock.advance(days=1)
    assert harness.run_schedule()["invoices_created"] == 1
    harness.admin("POST", "/v1/admin/billing/run", {"date": day.isoformat()})  # again: nothing new
    harness.drain("webhooks")
    [event] = receiver.events()
    assert event["type"] == "invoice.created"
    invoice = harness.call("GET", f"/v1/invoices/{event['data']['invoice_id']}", key=key).json["invoice"]
    assert event["data"]["amount_tomans"] == invoice["amount_tomans"]
    assert event["data"]["total_tokens"] == invoice["total_tokens"] > 0


def test_a_slow_receiver_times_out_into_a_retry_and_never_holds_up_a_chat(
    harness: Harness, receiver: WebhookReceiver, clock: FrozenClock
) -> None:
    _, key = harness.new_tenant()
    subscribe(harness, key, receiver.url, ["escalation.created"])
    receiver.hang_next(1, seconds=5)
    began = time.perf_counter()
    escalate(harness, key)  # queues the event; the receiver is not called from the chat
    assert time.perf_counter() - began < 5 and receiver.received == []

    container = harness.container
    impatient = WebhookDeliverer(
        container.webhook_repository,
        container.webhooks_queue,
        OutboundHttp(container.outbound.policy, timeout_seconds=0.5),
        Mailer(container.aws.ses, "billing@docuchat.test"),
        lambda tenant_id: None,
        clock,
    )
    message = json.loads(
        container.aws.sqs.receive_message(QueueUrl=harness.env["DOCUCHAT_WEBHOOKS_QUEUE_URL"])["Messages"][0]["Body"]
    )
    assert impatient.handle(message) == "retrying"
    [logged] = deliveries(harness, key)
    assert logged["attempts"][0]["status_code"] is None and "Timeout" in logged["attempts"][0]["error"]
