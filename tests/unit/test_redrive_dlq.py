"""tools/redrive_dlq.py's move-task path, which moto does not have: SQS stood in for by a recording stub."""

from __future__ import annotations

from typing import Any

import pytest

from tools import redrive_dlq
from tools.redrive_dlq import main

DLQ_URL = "https://sqs.example/123/docuchat-prod-usage-dlq"
SOURCE_URL = "https://sqs.example/123/docuchat-prod-usage"


class MoveTaskSqs:
    """SQS with a move task that reports progress, then completion; it records what it was asked."""

    def __init__(self, statuses: list[dict[str, Any]]) -> None:
        self.statuses = statuses
        self.started: list[dict[str, str]] = []
        self.received = 0

    def get_queue_url(self, QueueName: str) -> dict[str, str]:
        return {"QueueUrl": f"https://sqs.example/123/{QueueName}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        name = QueueUrl.rsplit("/", 1)[1]
        return {"Attributes": {"QueueArn": f"arn:aws:sqs:eu-central-1:123:{name}", "ApproximateNumberOfMessages": "7"}}

    def start_message_move_task(self, **arguments: str) -> dict[str, str]:
        self.started.append(arguments)
        return {"TaskHandle": "task-1"}

    def list_message_move_tasks(self, SourceArn: str, MaxResults: int) -> dict[str, Any]:
        return {"Results": [self.statuses.pop(0)]}

    def receive_message(self, **arguments: Any) -> dict[str, Any]:
        self.received += 1
        return {"Messages": []}


def test_a_redrive_starts_a_move_task_to_the_source_queue_and_follows_it_to_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given an SQS whose move task runs, then completes
    monkeypatch.setattr(redrive_dlq, "POLL_SECONDS", 0)
    sqs = MoveTaskSqs(
        [
            {"Status": "RUNNING", "ApproximateNumberOfMessagesMoved": 3, "ApproximateNumberOfMessagesToMove": 7},
            {"Status": "COMPLETED", "ApproximateNumberOfMessagesMoved": 7, "ApproximateNumberOfMessagesToMove": 7},
        ]
    )
    printed: list[str] = []

    # When the usage DLQ of prod is redriven
    code = main(["redrive", "--stage", "prod", "--queue", "usage"], sqs=sqs, out=printed.append)

    # Then one task moves the DLQ's messages to the usage queue, and its progress is printed until it completes
    assert code == 0
    assert sqs.started == [
        {
            "SourceArn": "arn:aws:sqs:eu-central-1:123:docuchat-prod-usage-dlq",
            "DestinationArn": "arn:aws:sqs:eu-central-1:123:docuchat-prod-usage",
        }
    ]
    assert printed[-2:] == ["move task RUNNING: 3 of 7 moved", "move task COMPLETED: 7 of 7 moved"]
    assert sqs.received == 0  # nothing moved by hand beside the task


def test_a_failed_move_task_fails_the_command() -> None:
    sqs = MoveTaskSqs([{"Status": "FAILED", "FailureReason": "AccessDenied", "ApproximateNumberOfMessagesMoved": 0}])
    printed: list[str] = []

    code = main(["redrive", "--stage", "prod", "--queue", "usage"], sqs=sqs, out=printed.append)

    assert code == 1 and printed[-1] == "failure: AccessDenied"
