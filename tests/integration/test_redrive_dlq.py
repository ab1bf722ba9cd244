"""tools/redrive_dlq.py against moto's SQS: moto has no message move tasks, so these drive the batch path."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.config import Config

from shared.resources import USAGE_QUEUE
from tests.support.aws import TEST_STAGE
from tools.redrive_dlq import main


@pytest.fixture
def sqs(moto_aws: Any) -> Any:
    """moto's SQS with the stage's queues and their DLQs, as deployed (local/bootstrap.py)."""
    moto_aws.reset()
    moto_aws.provision()
    return boto3.client(
        "sqs",
        endpoint_url=moto_aws.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),  # moto answers the move task with a 500: no need to retry it
    )


def url(sqs: Any, name: str) -> str:
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


def dead_letters(sqs: Any, count: int) -> list[str]:
    """`count` usage events in the usage DLQ, sent as chat sends them (with their `kind` attribute)."""
    bodies = [json.dumps({"event_id": f"e{number}", "tokens": number}) for number in range(count)]
    dlq = url(sqs, USAGE_QUEUE.dlq_physical_name(TEST_STAGE))
    for body in bodies:
        sqs.send_message(
            QueueUrl=dlq, MessageBody=body, MessageAttributes={"kind": {"DataType": "String", "StringValue": "chat"}}
        )
    return bodies


def drain(sqs: Any, name: str) -> list[dict[str, Any]]:
    """Every message in the queue `name`, taken out of sight."""
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(
        QueueUrl=url(sqs, name), MaxNumberOfMessages=10, VisibilityTimeout=300, MessageAttributeNames=["All"]
    ).get("Messages", []):
        messages += batch
    return messages


def held(sqs: Any, name: str) -> int:
    """Messages in the queue `name`, in sight or not (a received message not deleted is still there)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    counts = sqs.get_queue_attributes(QueueUrl=url(sqs, name), AttributeNames=names)["Attributes"]
    return sum(int(counts[n]) for n in names)


def run(sqs: Any, *argv: str) -> tuple[int, list[str]]:
    printed: list[str] = []
    code = main([*argv, "--stage", TEST_STAGE], sqs=sqs, out=printed.append)
    return code, printed


def test_a_redrive_puts_every_dead_letter_back_on_its_source_queue_once(sqs: Any) -> None:
    # Given 23 usage events that failed every retry (more than two batches of ten)
    sent = dead_letters(sqs, 23)

    # When the usage DLQ is redriven
    code, printed = run(sqs, "redrive", "--queue", "usage")

    # Then moto's missing move task sends it down the batch path, and every event is back once, attributes and all
    assert code == 0
    assert any("no message move task here" in line for line in printed)
    back = drain(sqs, USAGE_QUEUE.physical_name(TEST_STAGE))
    assert sorted(m["Body"] for m in back) == sorted(sent)
    assert {m["MessageAttributes"]["kind"]["StringValue"] for m in back} == {"chat"}
    # And the DLQ is empty: each was deleted once sent
    assert held(sqs, USAGE_QUEUE.dlq_physical_name(TEST_STAGE)) == 0


def test_a_dry_run_moves_nothing_and_max_moves_no_more_than_it_says(sqs: Any) -> None:
    # Given five dead letters
    dead_letters(sqs, 5)

    # When a dry run is asked for
    code, printed = run(sqs, "redrive", "--queue", "usage", "--dry-run")

    # Then it shows them and leaves them where they are
    assert code == 0 and any('"event_id": "e' in line for line in printed)
    assert printed[-1] == "dry run: nothing was moved"
    assert held(sqs, USAGE_QUEUE.physical_name(TEST_STAGE)) == 0
    assert held(sqs, USAGE_QUEUE.dlq_physical_name(TEST_STAGE)) == 5

    # When at most two are to be moved
    code, printed = run(sqs, "redrive", "--queue", "usage", "--max", "2")

    # Then exactly two go back and three stay in the DLQ
    assert code == 0
    assert len(drain(sqs, USAGE_QUEUE.physical_name(TEST_STAGE))) == 2
    assert held(sqs, USAGE_QUEUE.dlq_physical_name(TEST_STAGE)) == 3


def test_list_shows_each_dlq_with_its_source_and_a_schedule_dlq_is_not_redriven(sqs: Any) -> None:
    # Given two usage dead letters, and a schedule DLQ holding a failed scheduled run
    dead_letters(sqs, 2)
    schedule_dlq = sqs.create_queue(QueueName=f"docuchat-{TEST_STAGE}-billing-schedule-dlq")["QueueUrl"]
    sqs.send_message(QueueUrl=schedule_dlq, MessageBody=json.dumps({"requestPayload": {"source": "docuchat.schedule"}}))

    # When the DLQs are listed
    code, printed = run(sqs, "list")

    # Then each is there with its count and where it redrives to
    assert code == 0
    rows = {line.split()[0]: line for line in printed}
    assert set(rows) == {"usage", "ingestion", "webhooks", "billing-schedule"}
    assert "2 message(s)" in rows["usage"] and rows["usage"].endswith(f"-> docuchat-{TEST_STAGE}-usage")
    assert "no source queue" in rows["billing-schedule"]

    # And redriving the schedule DLQ is refused, its message kept
    code, printed = run(sqs, "redrive", "--queue", "billing-schedule")
    assert code == 2 and "no source queue" in printed[-1]
    assert len(drain(sqs, f"docuchat-{TEST_STAGE}-billing-schedule-dlq")) == 1
