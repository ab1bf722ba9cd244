"""SQS queues with their dead-letter queues, the event source mappings that feed them to their consumers, and
the SNS topics functions publish to.

Queues live with the data (they hold work not yet done); the mappings live with the functions. Both follow
shared.resources.QUEUES.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import QUEUES, TOPICS, QueueSpec
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

# Short: it saves invocations under load and adds at most this much latency when traffic is light.
MAX_BATCHING_WINDOW = Duration.seconds(2)
# AWS's rule for SQS event sources: at least six times the function's timeout, so a message is not handed to a
# second consumer while throttled retries of the first are still running.
VISIBILITY_TO_TIMEOUT_RATIO = 6
# The fewest concurrent batches an SQS event source may be limited to.
MIN_POLLER_CONCURRENCY = 2
# Longest SQS allows, to give people time to look at poison messages and redrive them.
DEAD_LETTER_RETENTION = Duration.days(14)


@dataclass(frozen=True)
class QueueWithDeadLetters:
    spec: QueueSpec
    queue: sqs.Queue
    dead_letter_queue: sqs.Queue


class Queues(Construct):
    """One queue and one dead-letter queue per QueueSpec; `by_id` maps a spec's id to them."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.by_id: dict[str, QueueWithDeadLetters] = {spec.id: self._queue(spec, stage) for spec in QUEUES}

    def _queue(self, spec: QueueSpec, stage: StageConfig) -> QueueWithDeadLetters:
        construct_id = spec.id.capitalize()
        dead_letter_queue = secure_queue(
            self,
            f"{construct_id}DeadLetterQueue",
            queue_name=spec.dlq_physical_name(stage.name),
            retention_period=DEAD_LETTER_RETENTION,
        )
        queue = secure_queue(
            self,
            f"{construct_id}Queue",
            queue_name=spec.physical_name(stage.name),
            visibility_timeout=visibility_timeout(spec, stage),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dead_letter_queue, max_receive_count=spec.max_receive_count),
        )
        return QueueWithDeadLetters(spec, queue, dead_letter_queue)


def secure_queue(
    scope: Construct,
    construct_id: str,
    *,
    queue_name: str,
    retention_period: Duration | None = None,
    visibility_timeout: Duration | None = None,
    dead_letter_queue: sqs.DeadLetterQueue | None = None,
) -> sqs.Queue:
    """A queue encrypted with an SQS-managed key (S3 can deliver to it) that refuses plain-HTTP requests."""
    queue = sqs.Queue(
        scope,
        construct_id,
        queue_name=queue_name,
        retention_period=retention_period,
        visibility_timeout=visibility_timeout,
        dead_letter_queue=dead_letter_queue,
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    accept(queue, SQS_MANAGED_ENCRYPTION)
    return queue


SQS_MANAGED_ENCRYPTION = Accepted(
    "CKV_AWS_27",
    "Encrypted at rest with SQS-managed keys (SqsManagedSseEnabled), which checkov does not recognise: it wants a KMS "
    "key. S3 cannot send its notifications to a queue under the AWS-managed KMS key, and a customer key costs $1 a "
    "month",
)


def visibility_timeout(spec: QueueSpec, stage: StageConfig) -> Duration:
    consumer_timeout = stage.functions[spec.consumer].timeout_seconds
    return Duration.seconds(VISIBILITY_TO_TIMEOUT_RATIO * consumer_timeout + MAX_BATCHING_WINDOW.to_seconds())


def subscribe_consumers(queues: Queues, functions: dict[str, lambda_.Function], *, stage: StageConfig) -> None:
    """Feeds each queue to its consumer function, with partial batch failure reporting.

    The event source mapping is created beside the function, so it lives in the functions' stack.
    """
    for item in queues.by_id.values():
        functions[item.spec.consumer].add_event_source(
            event_sources.SqsEventSource(
                item.queue,
                batch_size=item.spec.batch_size,
                max_batching_window=MAX_BATCHING_WINDOW,
                # A failed message is retried alone; the rest of its batch is not redelivered.
                report_batch_item_failures=True,
                max_concurrency=poller_concurrency(stage, item.spec.consumer),
            )
        )


def poller_concurrency(stage: StageConfig, consumer: str) -> int | None:
    """A consumer with reserved concurrency gets no more batches at once than it may run: batches Lambda throttles
    go back to the queue, count as receives and would end in the dead-letter queue though nothing failed."""
    reserved = stage.functions[consumer].reserved_concurrency
    return None if reserved is None else max(MIN_POLLER_CONCURRENCY, reserved)


class Topics(Construct):
    """One topic per TopicSpec (encrypted with SNS's AWS-managed key); `by_id` maps a spec's id to it."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(scope, construct_id)
        managed_key = kms.Alias.from_alias_name(self, "SnsKey", "alias/aws/sns")
        self.by_id: dict[str, sns.Topic] = {
            spec.id: sns.Topic(
                self, spec.id.capitalize(), topic_name=spec.physical_name(stage.name), master_key=managed_key
            )
            for spec in TOPICS
        }
