"""`make redrive`: list a stage's dead-letter queues, show what is in one, and move it back to its source queue.

    python -m tools.redrive_dlq list --stage prod
    python -m tools.redrive_dlq show --stage prod --queue usage [--count 5]
    python -m tools.redrive_dlq redrive --stage prod --queue usage [--dry-run] [--max N]

A redrive uses SQS's own message move task (StartMessageMoveTask) and follows it to the end. With `--max`, or
where the move task is not available (emulated AWS), it moves messages itself: receive, send to the source,
delete, ten at a time, never more than `--max` (or the count the DLQ held when it started, so messages that fail
again and come back are not moved round in a loop). Redriving is safe for DocuChat's queues: metering counts each
event id once, ingestion skips an upload already processed, and a webhook already delivered is not posted again.

The schedule DLQs (`<function>-schedule-dlq`) hold failed scheduled invocations, not messages of a queue: they
have no source to go back to. `show` prints them; docs/runbooks/redrive-dlq.md says how to run the job again.

AWS credentials and region come from the usual places (AWS_PROFILE, AWS_REGION); the region defaults to the
stage's in cdk.json, and AWS_ENDPOINT_URL points it at emulated AWS.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.resources import QUEUES, physical_name

DLQ_SUFFIX = "-dlq"
SQS_BATCH = 10  # the most ReceiveMessage and SendMessageBatch take
DEFAULT_WAIT_SECONDS = 600  # how long a redrive follows a move task before it leaves it running
POLL_SECONDS = 5
FINISHED = {"COMPLETED", "CANCELLED", "FAILED"}
# What SQS (or an emulator) answers when it has no message move tasks: then messages are moved one batch at a time.
MOVE_TASK_UNAVAILABLE = {"UnsupportedOperation", "InvalidAction", "NotImplemented", "500", "501"}

Print = Callable[[str], None]


@dataclass(frozen=True)
class DeadLetterQueue:
    name: str  # docuchat-<stage>-usage-dlq
    short_name: str  # usage, as --queue takes it
    url: str
    source_name: str | None  # the queue it is the DLQ of; None for the schedule DLQs


def dead_letter_queue(stage: str, name: str, url: str) -> DeadLetterQueue:
    """`name`'s queue, with the source whose dead letters it holds (shared.resources names both), if any."""
    source = next((spec.physical_name(stage) for spec in QUEUES if spec.dlq_physical_name(stage) == name), None)
    short_name = name.removeprefix(physical_name(stage, "")).removesuffix(DLQ_SUFFIX)
    return DeadLetterQueue(name, short_name, url, source)


def dead_letter_queues(sqs: Any, stage: str) -> list[DeadLetterQueue]:
    prefix = physical_name(stage, "")
    urls = sqs.list_queues(QueueNamePrefix=prefix).get("QueueUrls", [])
    names = {url.rsplit("/", 1)[1]: url for url in urls}
    return [dead_letter_queue(stage, name, url) for name, url in sorted(names.items()) if name.endswith(DLQ_SUFFIX)]


def find(sqs: Any, stage: str, queue: str) -> DeadLetterQueue:
    """The DLQ `queue` names: 'usage', 'usage-dlq' or 'docuchat-<stage>-usage-dlq'."""
    short = queue.removeprefix(physical_name(stage, "")).removesuffix(DLQ_SUFFIX)
    name = physical_name(stage, short + DLQ_SUFFIX)
    return dead_letter_queue(stage, name, sqs.get_queue_url(QueueName=name)["QueueUrl"])


def attribute(sqs: Any, url: str, name: str) -> str:
    return str(sqs.get_queue_attributes(QueueUrl=url, AttributeNames=[name])["Attributes"][name])


def visible(sqs: Any, url: str) -> int:
    return int(attribute(sqs, url, "ApproximateNumberOfMessages"))


def peek(sqs: Any, url: str, count: int) -> list[dict[str, Any]]:
    """Up to `count` (at most 10) messages, left in the queue: visible again at once."""
    response = sqs.receive_message(
        QueueUrl=url,
        MaxNumberOfMessages=max(1, min(SQS_BATCH, count)),
        VisibilityTimeout=0,
        WaitTimeSeconds=1,
        AttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    messages: list[dict[str, Any]] = response.get("Messages", [])
    return messages


def describe(message: dict[str, Any], width: int = 600) -> str:
    sent = message.get("Attributes", {}).get("SentTimestamp")
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(sent) / 1000)) if sent else "?"
    body = message["Body"]
    with contextlib.suppress(ValueError):  # a body that is not JSON is shown as it is
        body = json.dumps(json.loads(body), ensure_ascii=False, sort_keys=True)
    return f"- {message['MessageId']} sent {when}: {body[:width]}{'...' if len(body) > width else ''}"


def start_move_task(sqs: Any, dlq: DeadLetterQueue, source_url: str, out: Print) -> str | None:
    """SQS's own redrive; its task handle, or None when this SQS has no move tasks."""
    from botocore.exceptions import ClientError

    try:
        response = sqs.start_message_move_task(
            SourceArn=attribute(sqs, dlq.url, "QueueArn"), DestinationArn=attribute(sqs, source_url, "QueueArn")
        )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        if code not in MOVE_TASK_UNAVAILABLE:
            raise
        out(f"no message move task here ({code}): moving the messages one batch at a time")
        return None
    return str(response["TaskHandle"])


def follow_move_task(sqs: Any, dlq: DeadLetterQueue, wait_seconds: int, out: Print) -> str:
    """Prints the task's progress until it ends or `wait_seconds` pass; returns its last status."""
    source_arn = attribute(sqs, dlq.url, "QueueArn")
    deadline = time.monotonic() + wait_seconds
    while True:
        [task] = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1)["Results"]
        status = str(task["Status"])
        moved, total = task.get("ApproximateNumberOfMessagesMoved", 0), task.get("ApproximateNumberOfMessagesToMove")
        out(f"move task {status}: {moved} of {total if total is not None else '?'} moved")
        if status in FINISHED:
            if task.get("FailureReason"):
                out(f"failure: {task['FailureReason']}")
            return status
        if time.monotonic() >= deadline:
            out(f"still running after {wait_seconds} s; it goes on without this command (list-message-move-tasks)")
            return status
        time.sleep(POLL_SECONDS)


def copy_messages(sqs: Any, dlq_url: str, source_url: str, limit: int, out: Print) -> int:
    """Moves at most `limit` messages, bodies and attributes unchanged, each deleted only once it was sent."""
    moved = failed = 0
    while moved + failed < limit:
        received = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=min(SQS_BATCH, limit - moved - failed),
            VisibilityTimeout=60,  # a message not sent in time shows in the DLQ again
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not received:
            break
        entries = [
            {"Id": str(number), "MessageBody": message["Body"]}
            | ({"MessageAttributes": message["MessageAttributes"]} if message.get("MessageAttributes") else {})
            for number, message in enumerate(received)
        ]
        sent = sqs.send_message_batch(QueueUrl=source_url, Entries=entries)
        done = [received[int(entry["Id"])] for entry in sent.get("Successful", [])]
        if done:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[{"Id": str(number), "ReceiptHandle": m["ReceiptHandle"]} for number, m in enumerate(done)],
            )
        for failure in sent.get("Failed", []):
            out(f"not sent, left in the DLQ: {received[int(failure['Id'])]['MessageId']}: {failure.get('Message')}")
        moved += len(done)
        failed += len(received) - len(done)
        out(f"moved {moved} of at most {limit}")
    return moved


def redrive(sqs: Any, dlq: DeadLetterQueue, *, dry_run: bool, max_messages: int | None, wait: int, out: Print) -> int:
    if dlq.source_name is None:
        out(
            f"{dlq.name} holds failed scheduled invocations and has no source queue to redrive to: "
            "see docs/runbooks/redrive-dlq.md to run the job again"
        )
        return 2
    source_url = sqs.get_queue_url(QueueName=dlq.source_name)["QueueUrl"]
    count = visible(sqs, dlq.url)
    limit = count if max_messages is None else min(count, max_messages)
    how = "in batches of ten" if max_messages is not None else "with a message move task"
    out(f"{dlq.name}: about {count} message(s); {limit} to go back to {dlq.source_name} {how}")
    if dry_run:
        for message in peek(sqs, dlq.url, min(limit, 3)) if limit else []:
            out(describe(message))
        out("dry run: nothing was moved")
        return 0
    if limit == 0:
        return 0
    if max_messages is None and (handle := start_move_task(sqs, dlq, source_url, out)) is not None:
        out(f"move task started: {handle}")
        return 0 if follow_move_task(sqs, dlq, wait, out) in {"COMPLETED", "RUNNING"} else 1
    copy_messages(sqs, dlq.url, source_url, limit, out)
    left = visible(sqs, dlq.url)
    out(f"{dlq.name}: about {left} message(s) left")
    return 0


def sqs_client(stage: str, region: str | None) -> Any:
    import boto3

    from stacks.stage_config import load_stage

    return boto3.client("sqs", region_name=region or load_stage(stage).region)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["list", "show", "redrive"])
    parser.add_argument("--stage", required=True, help="dev, staging or prod")
    parser.add_argument("--queue", help="usage, ingestion, webhooks, or a schedule DLQ: billing-schedule, ...")
    parser.add_argument("--region", help="default: the stage's region in cdk.json")
    parser.add_argument("--count", type=int, default=3, help="show: how many messages (at most 10)")
    parser.add_argument("--dry-run", action="store_true", help="redrive: say what would move, move nothing")
    parser.add_argument("--max", type=int, dest="max_messages", help="redrive: move at most this many")
    parser.add_argument("--wait", type=int, default=DEFAULT_WAIT_SECONDS, help="redrive: seconds to follow a task")
    args = parser.parse_args(argv)
    if args.command != "list" and not args.queue:
        parser.error(f"{args.command} needs --queue")
    if args.max_messages is not None and args.max_messages < 1:
        parser.error("--max must be at least 1")
    return args


def main(argv: list[str] | None = None, sqs: Any = None, out: Print = print) -> int:
    args = parse_args(argv)
    sqs = sqs or sqs_client(args.stage, args.region)
    if args.command == "list":
        for dlq in dead_letter_queues(sqs, args.stage):
            source = dlq.source_name or "no source queue (failed scheduled runs)"
            out(f"{dlq.short_name:<20} {visible(sqs, dlq.url):>7} message(s)   -> {source}")
        return 0
    dlq = find(sqs, args.stage, args.queue)
    if args.command == "show":
        out(f"{dlq.name}: about {visible(sqs, dlq.url)} message(s)")
        for message in peek(sqs, dlq.url, args.count):
            out(describe(message))
        return 0
    return redrive(sqs, dlq, dry_run=args.dry_run, max_messages=args.max_messages, wait=args.wait, out=out)


if __name__ == "__main__":
    sys.exit(main())
