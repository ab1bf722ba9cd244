"""Invariant 1, under faults: every usage event is counted exactly once.

The metering handler is called in-process with real SQS event shapes; SQS's part (redelivering what the
response names, or the whole batch) is played by the test. Each test runs against moto and against
DynamoDB Local, AWS's own implementation, which has the real transaction semantics.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import Stubber

from functions.metering import handler as metering
from local.lambda_runtime import LocalLambdaContext
from shared.data.messaging import UsageQueue
from shared.metering import DurableUsageSink, billing_day
from tests.support.harness import CONCURRENT_WRITERS, Harness
from tests.support.usage import MORNING, deliver, deliver_until_done, event, totals


class FaultyDynamoDB:
    """A DynamoDB client whose TransactWriteItems calls fail as `fault` decides (before or after applying)."""

    def __init__(self, real: Any, fault: Callable[[int], str | None]) -> None:
        self._real = real
        self._fault = fault
        self.calls = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)

    def transact_write_items(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            call = self.calls
        fault = self._fault(call)
        if fault == "throttle":
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                "TransactWriteItems",
            )
        if fault == "crash":
            raise RuntimeError("the function died mid-batch")
        response = self._real.transact_write_items(**kwargs)
        if fault == "lost-reply":
            # The transaction committed, but its answer never came back.
            raise ReadTimeoutError(endpoint_url="https://dynamodb.local")
        return response


def inject(harness: Harness, monkeypatch: pytest.MonkeyPatch, fault: Callable[[int], str | None]) -> FaultyDynamoDB:
    faulty = FaultyDynamoDB(harness.container.usage._db, fault)
    monkeypatch.setattr(harness.container.usage, "_db", faulty)
    return faulty


def test_the_same_event_delivered_ten_times_is_counted_once(any_harness: Harness) -> None:
    tenant_id, _ = any_harness.new_tenant()
    body = event(tenant_id, 1).model_dump_json()
    for _ in range(10):
        assert deliver([body])[1] == []
    deliver([body] * 10)  # and ten times within one batch
    assert totals(any_harness, tenant_id) == (1, 15)


def test_a_crash_after_part_of_a_batch_was_applied_then_redelivery_counts_each_once(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a batch of two tenants' events, whose second group's write crashes
    a, _ = any_harness.new_tenant("A", "a@a.test")
    b, _ = any_harness.new_tenant("B", "b@b.test")
    bodies = [event(a, n).model_dump_json() for n in range(5)] + [event(b, n).model_dump_json() for n in range(5)]
    faulty = inject(any_harness, monkeypatch, lambda call: "crash" if call == 2 else None)

    # When it is delivered, then only the crashed group's records are reported
    ids, failed = deliver(bodies)
    assert failed == ids[5:]

    # And when SQS delivers the whole batch again (the strictest redelivery), each event counts once
    deliver_until_done(bodies)
    assert faulty.calls >= 3
    assert totals(any_harness, a) == (5, 75) and totals(any_harness, b) == (5, 75)


def test_a_committed_transaction_whose_reply_was_lost_adds_nothing_when_retried(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a write that commits but times out on the way back
    tenant_id, _ = any_harness.new_tenant()
    bodies = [event(tenant_id, n).model_dump_json() for n in range(4)]
    inject(any_harness, monkeypatch, lambda call: "lost-reply" if call == 1 else None)

    # When the batch fails for the handler and SQS delivers it again
    ids, failed = deliver(bodies)
    assert failed == ids
    deliver_until_done(bodies)

    # Then the retry recognised every event as counted: nothing added
    assert totals(any_harness, tenant_id) == (4, 60)


def test_the_poison_record_four_of_ten_is_the_only_one_reported_and_ends_in_the_dlq(any_harness: Harness) -> None:
    # Given ten records on the usage queue, the fourth one poison
    tenant_id, _ = any_harness.new_tenant()
    sqs = any_harness.container.aws.sqs
    queue_url = any_harness.env["DOCUCHAT_USAGE_QUEUE_URL"]
    bodies = [event(tenant_id, n).model_dump_json() for n in range(10)]
    bodies[3] = '{"event_id": "poison", "input_tokens": "lots"}'

    # When the handler gets them as one batch, then its response names only the fourth
    ids, failed = deliver(bodies)
    assert failed == [ids[3]]
    assert totals(any_harness, tenant_id) == (9, 135)

    # And through the real queue, after maxReceiveCount deliveries, the poison sits in the DLQ
    sqs.send_message(QueueUrl=queue_url, MessageBody=bodies[3])
    for _ in range(8):
        any_harness.drain("usage", rounds=1)
    dlq = sqs.receive_message(QueueUrl=queue_url + "-dlq", MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in dlq] == [bodies[3]]
    assert totals(any_harness, tenant_id) == (9, 135)


def test_when_the_whole_batch_fails_every_record_is_reported_and_nothing_is_counted(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id, _ = any_harness.new_tenant()
    inject(any_harness, monkeypatch, lambda call: "throttle")
    bodies = [event(tenant_id, n, at=MORNING + timedelta(days=n % 2)).model_dump_json() for n in range(6)]
    ids, failed = deliver(bodies)
    assert sorted(failed) == sorted(ids)
    assert totals(any_harness, tenant_id) == (0, 0)


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '{"event_id": "e1234567890"}',
        '{"event_id": "e1234567890", "tenant_id": "t0123456789", "kind": "chat", "model": "m", "input_tokens": -1,'
        ' "output_tokens": 1, "occurred_at": "2030-11-20T06:00:00Z"}',
        '{"event_id": "e1234567890", "tenant_id": "t0123456789", "kind": "chat", "model": "m", "input_tokens": 1,'
        ' "output_tokens": 99000000000, "occurred_at": "2030-11-20T06:00:00Z"}',
    ],
)
def test_malformed_negative_and_absurd_events_are_refused_and_never_counted(harness: Harness, body: str) -> None:
    tenant_id, _ = harness.new_tenant()
    ids, failed = deliver([body, event(tenant_id, 1).model_dump_json()])
    assert failed == [ids[0]]
    assert totals(harness, tenant_id) == (1, 15)


def test_an_unknown_tenants_events_are_refused(harness: Harness) -> None:
    ids, failed = deliver([event("t0000000000dead", 1).model_dump_json()])
    assert failed == ids


@CONCURRENT_WRITERS
def test_a_concurrent_burst_on_one_tenant_day_drops_nothing_under_throttling(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a storm of one tenant's events, and DynamoDB throttling a third of the writes
    tenant_id, _ = any_harness.new_tenant()
    chaos = random.Random(7)
    inject(any_harness, monkeypatch, lambda call: "throttle" if chaos.random() < 0.33 else None)
    batches = [[event(tenant_id, b * 25 + n).model_dump_json() for n in range(25)] for b in range(16)]

    # When eight workers deliver them at once, each redelivering what failed
    errors: list[BaseException] = []

    def worker(batch: list[str]) -> None:
        try:
            deliver_until_done(batch, rounds=60)
        except BaseException as error:  # a thread's failure must fail the test
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then all 400 are counted, once
    assert not errors
    assert totals(any_harness, tenant_id) == (400, 400 * 15)


def test_when_sqs_is_unreachable_the_event_is_parked_and_counted_once_by_the_drain(harness: Harness) -> None:
    # Given SQS answering every send with an error, after botocore's own retries
    tenant_id, _ = harness.new_tenant()
    container = harness.container
    stubber = Stubber(container.aws.sqs)
    for _ in range(2):
        stubber.add_client_error("send_message_batch", service_error_code="ServiceUnavailable", http_status_code=503)
    sink = DurableUsageSink(
        UsageQueue(container.aws.sqs, container.settings.usage_queue_url), container.outbox, container.clock
    )

    # When two answers' usage events are sent
    with stubber:
        sink.send(event(tenant_id, 1))
        sink.send(event(tenant_id, 2))

    # Then they are in the outbox, not lost; the drain counts them once, even when it runs twice
    assert len(container.outbox.parked(tenant_id)) == 2
    assert metering.handler({"source": "docuchat.outbox-drain"}, LocalLambdaContext("metering")) == {"drained": 2}
    assert metering.handler({"source": "docuchat.outbox-drain"}, LocalLambdaContext("metering")) == {"drained": 0}
    assert container.outbox.parked(tenant_id) == []
    assert totals(harness, tenant_id) == (2, 30)


def test_a_chat_answer_is_not_lost_when_sqs_is_down(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the usage queue failing
    tenant_id, key = harness.new_tenant()

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "InternalError", "Message": "down"}}, "SendMessage")

    monkeypatch.setattr(harness.container.usage_queue._sqs, "send_message_batch", refuse)

    # When the tenant chats, it gets its answer, and the tokens are parked
    reply = harness.call("POST", "/v1/chat", {"message": "tell me something new", "use_documents": False}, key=key)
    assert reply.status == 200, reply
    [parked] = harness.container.outbox.parked(tenant_id)
    assert parked.total_tokens == reply.json["usage"]["total_tokens"]

    # And the drain counts them
    metering.handler({"source": "docuchat.outbox-drain"}, LocalLambdaContext("metering"))
    day = billing_day(harness.container.clock(), "Asia/Tehran")
    assert totals(harness, tenant_id, day, day)[1] == reply.json["usage"]["total_tokens"]
