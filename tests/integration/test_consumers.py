"""The SQS consumers with real event shapes: partial batch failures, skips, poison and bad content."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from functions.ingestion import handler as ingestion
from functions.metering import handler as metering
from local.lambda_runtime import LocalLambdaContext, sqs_event
from shared.data.blobs import source_key
from shared.metering import billing_day
from shared.models import UsageEvent, UsageKind
from tests.support.harness import Harness

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:docuchat-test-usage"


def usage_event(n: int, tenant_id: str = "t0123456789abcdef", tokens: int = 10) -> UsageEvent:
    return UsageEvent(
        event_id=f"e{n:020d}",
        tenant_id=tenant_id,
        key_id="k0123456789",
        kind=UsageKind.CHAT,
        model="gpt-4o-mini",
        input_tokens=tokens,
        output_tokens=tokens,
        occurred_at=datetime(2030, 11, 20, 9, 0, tzinfo=UTC),
    )


def messages(bodies: list[str]) -> list[dict]:
    return [{"MessageId": f"m{i}", "ReceiptHandle": f"r{i}", "Body": body} for i, body in enumerate(bodies)]


def test_a_poison_record_is_the_only_one_reported_and_the_rest_are_counted(harness: Harness) -> None:
    # Given ten usage events of which the fourth is garbage
    tenant_id, _ = harness.new_tenant()
    bodies = [usage_event(n, tenant_id).model_dump_json() for n in range(10)]
    bodies[3] = '{"event_id": "nonsense", "input_tokens": -5}'

    # When the metering function gets them as one batch
    response = metering.handler(sqs_event(messages(bodies), QUEUE_ARN), LocalLambdaContext("metering"))

    # Then only the fourth is reported as failed, and the nine others are counted
    assert response == {"batchItemFailures": [{"itemIdentifier": "m3"}]}
    day = billing_day(datetime(2030, 11, 20, 9, 0, tzinfo=UTC), "Asia/Tehran")
    counters = harness.container.usage.counters_for_tenant(tenant_id, day, day)
    assert [(c.events, c.total_tokens) for c in counters] == [(9, 180)]


def test_redelivering_the_batch_counts_nothing_twice(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    bodies = [usage_event(n, tenant_id).model_dump_json() for n in range(5)]
    for _ in range(3):
        assert metering.handler(sqs_event(messages(bodies), QUEUE_ARN), LocalLambdaContext("metering")) == {
            "batchItemFailures": []
        }
    counters = harness.container.usage.counters_for_tenant(
        tenant_id, datetime(2030, 11, 20).date(), datetime(2030, 11, 21).date()
    )
    assert [(c.events, c.total_tokens) for c in counters] == [(5, 100)]


def test_a_poison_message_ends_in_the_dead_letter_queue_after_its_receives(harness: Harness) -> None:
    # Given a garbage message on the usage queue
    sqs = harness.container.aws.sqs
    queue_url = harness.env["DOCUCHAT_USAGE_QUEUE_URL"]
    sqs.send_message(QueueUrl=queue_url, MessageBody="not an event")

    # When it is delivered as often as the redrive policy allows
    for _ in range(8):
        harness.drain("usage", rounds=1)

    # Then it sits in the DLQ, off the usage queue
    dlq_url = queue_url + "-dlq"
    moved = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10).get("Messages", [])
    assert [m["Body"] for m in moved] == ["not an event"]
    assert harness.queued("usage") == 0


def test_s3_test_events_and_unknown_keys_are_acknowledged_and_skipped(harness: Harness) -> None:
    test_event = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})
    unknown = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": "elsewhere/file.txt"}}}]})
    orphan_key = source_key("t0123456789abcdef", "d0123456789abcdef")
    orphan = json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}, "object": {"key": orphan_key}}}]})
    response = ingestion.handler(
        sqs_event(messages([test_event, unknown, orphan]), QUEUE_ARN), LocalLambdaContext("ingestion")
    )
    assert response == {"batchItemFailures": []}


def test_a_document_that_is_not_text_fails_with_its_reason(harness: Harness) -> None:
    # Given a document whose stored source is not UTF-8 text
    _, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Binary", "text": "placeholder"}, key=key).json
    bucket = harness.env["DOCUCHAT_DOCUMENTS_BUCKET"]
    harness.drain("ingestion")
    harness.container.aws.s3.put_object(
        Bucket=bucket, Key=source_key(created_tenant(harness, key), created["document_id"]), Body=b"\xff\xfe\x00bad"
    )

    # When ingestion processes the new upload
    harness.drain("ingestion")

    # Then the document is failed with a clear reason
    document = harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).json
    assert document["status"] == "failed" and "UTF-8" in document["reason"]


def created_tenant(harness: Harness, key: str) -> str:
    return key.split("_")[1]
