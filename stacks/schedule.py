"""The nightly billing run: an EventBridge Scheduler cron in the stage's time zone, invoking billing."""

from __future__ import annotations

from aws_cdk import Duration, TimeZone
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from constructs import Construct

from shared.resources import physical_name
from stacks.messaging import DEAD_LETTER_RETENTION, secure_queue
from stacks.stage_config import StageConfig

# What the billing handler sees as the event; it tells a scheduled run from an admin call.
SCHEDULE_INPUT = {"source": "docuchat.schedule"}
# Scheduler retries only failed deliveries to Lambda; a few, spread over an hour, ride out a throttle.
DELIVERY_RETRY_ATTEMPTS = 3
DELIVERY_MAX_EVENT_AGE = Duration.hours(1)
# Lambda's own retries of a run that fails inside billing; safe because a re-run changes nothing.
RUN_RETRY_ATTEMPTS = 2


class NightlyBilling(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, billing: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        # One place to look for a night that was not billed: an undeliverable invocation or a run that kept failing.
        self.dead_letter_queue = secure_queue(
            self,
            "DeadLetterQueue",
            queue_name=physical_name(stage.name, "billing-schedule-dlq"),
            retention_period=DEAD_LETTER_RETENTION,
        )
        self.schedule = scheduler.Schedule(
            self,
            "Schedule",
            schedule_name=physical_name(stage.name, "nightly-billing"),
            description=f"Closes the previous day's invoices at {stage.billing_hour:02d}:{stage.billing_minute:02d} "
            f"{stage.billing_timezone}",
            schedule=scheduler.ScheduleExpression.cron(
                minute=str(stage.billing_minute),
                hour=str(stage.billing_hour),
                time_zone=TimeZone.of(stage.billing_timezone),
            ),
            target=targets.LambdaInvoke(
                billing,
                input=scheduler.ScheduleTargetInput.from_object(SCHEDULE_INPUT),
                retry_attempts=DELIVERY_RETRY_ATTEMPTS,
                max_event_age=DELIVERY_MAX_EVENT_AGE,
                dead_letter_queue=self.dead_letter_queue,
            ),
        )
        # Scheduler invokes asynchronously, so a run that raises is retried by Lambda and then lands here too.
        billing.configure_async_invoke(
            retry_attempts=RUN_RETRY_ATTEMPTS,
            on_failure=destinations.SqsDestination(self.dead_letter_queue),
        )
