"""Scheduled runs (EventBridge Scheduler): nightly billing, the reconciliation after it, the outbox drain, and
the sweep of uploads that never arrived.

Each function a schedule invokes has one dead-letter queue for all its scheduled runs: Scheduler puts there what
it could not deliver, and Lambda (through the function's on-failure destination, of which a function has one)
what kept failing inside the function. Monitoring alarms on each of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aws_cdk import Duration, Stack, TimeZone
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import OUTBOX_DRAIN_MINUTES, UPLOAD_SWEEP_MINUTES, physical_name
from stacks.messaging import DEAD_LETTER_RETENTION, secure_queue
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

# What each handler sees as the event: the `source` tells it which job to do.
BILLING_INPUT = {"source": "docuchat.schedule"}  # functions/billing/handler.py: close the previous day
RECONCILE_INPUT = {"source": "docuchat.reconcile"}  # functions/billing/handler.py: RECONCILE
OUTBOX_DRAIN_INPUT = {"source": "docuchat.outbox-drain"}  # functions/metering/handler.py: OUTBOX_DRAIN
OUTBOX_DRAIN_RATE = Duration.minutes(OUTBOX_DRAIN_MINUTES)
UPLOAD_SWEEP_INPUT = {"source": "docuchat.upload-sweep"}  # functions/ingestion/handler.py: UPLOAD_SWEEP
# Scheduler retries only failed deliveries to Lambda; a few, spread over an hour, ride out a throttle.
DELIVERY_RETRY_ATTEMPTS = 3
DELIVERY_MAX_EVENT_AGE = Duration.hours(1)
# Lambda's own retries of a run that raises inside the function; safe because every scheduled job is idempotent.
RUN_RETRY_ATTEMPTS = 2


@dataclass(frozen=True)
class ScheduledRun:
    name: str  # the schedule is named docuchat-<stage>-<name>
    function_id: str  # a key of shared.resources.FUNCTIONS
    expression: scheduler.ScheduleExpression
    payload: dict[str, str]
    description: str


def scheduled_runs(stage: StageConfig) -> tuple[ScheduledRun, ...]:
    zone = TimeZone.of(stage.billing_timezone)
    return (
        ScheduledRun(
            "nightly-billing",
            "billing",
            _daily(stage.billing_hour, stage.billing_minute, zone),
            BILLING_INPUT,
            f"Closes the previous day's invoices at {stage.billing_hour:02d}:{stage.billing_minute:02d} "
            f"{stage.billing_timezone}",
        ),
        ScheduledRun(
            "reconciliation",
            "billing",
            _daily(stage.reconcile_hour, stage.reconcile_minute, zone),
            RECONCILE_INPUT,
            f"Checks the previous day's invoices against its metered events at "
            f"{stage.reconcile_hour:02d}:{stage.reconcile_minute:02d} {stage.billing_timezone}",
        ),
        ScheduledRun(
            "outbox-drain",
            "metering",
            scheduler.ScheduleExpression.rate(OUTBOX_DRAIN_RATE),
            OUTBOX_DRAIN_INPUT,
            "Counts usage events parked in the outbox while SQS would not take them",
        ),
        ScheduledRun(
            "upload-sweep",
            "ingestion",
            scheduler.ScheduleExpression.rate(Duration.minutes(UPLOAD_SWEEP_MINUTES)),
            UPLOAD_SWEEP_INPUT,
            "Fails documents whose upload URL expired and whose file never arrived",
        ),
    )


IS_A_DEAD_LETTER_QUEUE = Accepted(
    "AwsSolutions-SQS3",
    "It is a dead-letter queue: Scheduler's for the runs it could not deliver, and Lambda's on-failure destination "
    "for the runs that kept failing; cdk-nag recognises only queues named in another queue's redrive policy",
)
# The roles LambdaInvoke makes for Scheduler, one per target function, at the top of the stack.
SCHEDULER_ROLE_PREFIX = "SchedulerRoleForTarget"
SCHEDULER_INVOKES_VERSIONS = Accepted(
    "AwsSolutions-IAM5",
    "CDK's LambdaInvoke target lets Scheduler invoke its one function and that function's versions (<ARN>:*)",
    applies_to=(r"/^Resource::<Functions[A-Za-z]+[0-9A-F]{8}\.Arn>:\*$/",),
)


class Schedules(Construct):
    """`dead_letter_queues` maps each scheduled function's id to the queue its failed scheduled runs land in."""

    def __init__(
        self, scope: Construct, construct_id: str, *, stage: StageConfig, functions: Mapping[str, lambda_.IFunction]
    ) -> None:
        super().__init__(scope, construct_id)
        runs = scheduled_runs(stage)
        scheduled_functions = dict.fromkeys(run.function_id for run in runs)  # ordered, without repeats
        self.dead_letter_queues: dict[str, sqs.Queue] = {
            function_id: self._dead_letter_queue(stage, function_id, functions[function_id])
            for function_id in scheduled_functions
        }
        self.by_name: dict[str, scheduler.Schedule] = {
            run.name: self._schedule(stage, run, functions[run.function_id]) for run in runs
        }
        for child in Stack.of(self).node.children:
            if child.node.id.startswith(SCHEDULER_ROLE_PREFIX):
                accept(child, SCHEDULER_INVOKES_VERSIONS)

    def _dead_letter_queue(self, stage: StageConfig, function_id: str, function: lambda_.IFunction) -> sqs.Queue:
        queue = secure_queue(
            self,
            f"{_pascal(function_id)}DeadLetterQueue",
            queue_name=physical_name(stage.name, f"{function_id}-schedule-dlq"),
            retention_period=DEAD_LETTER_RETENTION,
        )
        # Scheduler invokes asynchronously, so a run that raises is retried by Lambda and then lands here too.
        function.configure_async_invoke(
            retry_attempts=RUN_RETRY_ATTEMPTS, on_failure=destinations.SqsDestination(queue)
        )
        accept(queue, IS_A_DEAD_LETTER_QUEUE)
        return queue

    def _schedule(self, stage: StageConfig, run: ScheduledRun, function: lambda_.IFunction) -> scheduler.Schedule:
        return scheduler.Schedule(
            self,
            _pascal(run.name),
            schedule_name=physical_name(stage.name, run.name),
            description=run.description,
            schedule=run.expression,
            target=targets.LambdaInvoke(
                function,
                input=scheduler.ScheduleTargetInput.from_object(run.payload),
                retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                max_event_age=DELIVERY_MAX_EVENT_AGE,
                dead_letter_queue=self.dead_letter_queues[run.function_id],
            ),
        )


def _daily(hour: int, minute: int, zone: TimeZone) -> scheduler.ScheduleExpression:
    return scheduler.ScheduleExpression.cron(minute=str(minute), hour=str(hour), time_zone=zone)


def _pascal(name: str) -> str:
    """'outbox-drain' -> 'OutboxDrain'."""
    return "".join(part.capitalize() for part in name.split("-"))
