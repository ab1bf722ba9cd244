"""The schedules: nightly billing, the reconciliation after it, the outbox drain and the upload sweep, each with a
watched DLQ."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from stacks.monitoring import PAGING_DEAD_LETTER_QUEUES
from stacks.stage_config import StageConfig, load_stage
from tests.infrastructure.synthesized import SynthesizedStage, props

# Written out, not imported: these are the handlers' contracts (functions/billing and functions/metering read
# `source`), so a change on the stacks' side alone has to fail here.
SCHEDULES = {
    "nightly-billing": ("billing", {"source": "docuchat.schedule"}),
    "reconciliation": ("billing", {"source": "docuchat.reconcile"}),
    "outbox-drain": ("metering", {"source": "docuchat.outbox-drain"}),
    "upload-sweep": ("ingestion", {"source": "docuchat.upload-sweep"}),
}
SCHEDULE_NAMES = sorted(SCHEDULES)
SCHEDULED_FUNCTIONS = sorted({function_id for function_id, _ in SCHEDULES.values()})


def _dead_letter_queue_id(synthesized: SynthesizedStage, function_id: str) -> str:
    return synthesized.queue(f"docuchat-{synthesized.stage.name}-{function_id}-schedule-dlq")[0]


def _daily_time(expression: str) -> tuple[int, int]:
    """(hour, minute) of a daily Scheduler cron."""
    match = re.fullmatch(r"cron\((\d+) (\d+) \* \* \? \*\)", expression)
    assert match, f"not a daily cron: {expression}"
    return int(match[2]), int(match[1])


def test_the_schedules_are_exactly_these(synthesized: SynthesizedStage) -> None:
    names = {props(s)["Name"] for s in synthesized.of_type("AWS::Scheduler::Schedule").values()}
    assert names == {f"docuchat-{synthesized.stage.name}-{name}" for name in SCHEDULES}


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_each_schedule_invokes_its_function_with_its_input(synthesized: SynthesizedStage, name: str) -> None:
    # Given
    function_id, expected_input = SCHEDULES[name]
    # When
    _, schedule = synthesized.schedule(name)
    target = props(schedule)["Target"]
    # Then
    assert props(schedule)["State"] == "ENABLED"
    assert synthesized.target(target["Arn"]) == synthesized.function(function_id)[0]
    assert json.loads(target["Input"]) == expected_input
    # Then: failed deliveries are retried a few times within the hour, then kept in the function's schedule DLQ
    assert 1 <= target["RetryPolicy"]["MaximumRetryAttempts"] <= 5
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 3600
    assert synthesized.target(target["DeadLetterConfig"]["Arn"]) == _dead_letter_queue_id(synthesized, function_id)


def test_billing_runs_nightly_on_the_stage_cron_and_time_zone(synthesized: SynthesizedStage) -> None:
    stage = synthesized.stage
    properties = props(synthesized.schedule("nightly-billing")[1])
    assert properties["ScheduleExpression"] == stage.billing_cron
    assert _daily_time(properties["ScheduleExpression"]) == (stage.billing_hour, stage.billing_minute)
    assert properties["ScheduleExpressionTimezone"] == stage.billing_timezone


def test_reconciliation_runs_nightly_after_billing_in_the_same_time_zone(synthesized: SynthesizedStage) -> None:
    # Given
    stage = synthesized.stage
    billing = props(synthesized.schedule("nightly-billing")[1])
    # When
    reconciliation = props(synthesized.schedule("reconciliation")[1])
    # Then: at the stage's time (02:00 in cdk.json), later the same day than the run whose work it checks
    assert reconciliation["ScheduleExpression"] == stage.reconcile_cron
    assert _daily_time(reconciliation["ScheduleExpression"]) == (stage.reconcile_hour, stage.reconcile_minute) == (2, 0)
    assert _daily_time(reconciliation["ScheduleExpression"]) > _daily_time(billing["ScheduleExpression"])
    assert (
        reconciliation["ScheduleExpressionTimezone"] == billing["ScheduleExpressionTimezone"] == stage.billing_timezone
    )


def test_the_outbox_is_drained_every_five_minutes(synthesized: SynthesizedStage) -> None:
    assert props(synthesized.schedule("outbox-drain")[1])["ScheduleExpression"] == "rate(5 minutes)"


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_each_schedule_may_invoke_only_its_target(synthesized: SynthesizedStage, name: str) -> None:
    # Given
    function_id, _ = SCHEDULES[name]
    function_logical_id = synthesized.function(function_id)[0]
    role_id = synthesized.target(props(synthesized.schedule(name)[1])["Target"]["RoleArn"])
    # When
    granted = synthesized.grants_of_role(role_id)
    # Then: Scheduler assumes the role, which invokes its function (any version) and writes its DLQ, nothing else
    trust = props(synthesized.resources[role_id])["AssumeRolePolicyDocument"]["Statement"]
    assert [s["Principal"] for s in trust] == [{"Service": "scheduler.amazonaws.com"}]
    assert granted == {
        "lambda:InvokeFunction": {function_logical_id},
        "sqs:SendMessage": {_dead_letter_queue_id(synthesized, function_id)},
    }


@pytest.mark.parametrize("function_id", SCHEDULED_FUNCTIONS)
def test_runs_that_keep_failing_inside_a_scheduled_function_land_in_its_dlq(
    synthesized: SynthesizedStage, function_id: str
) -> None:
    # Given
    function_logical_id = synthesized.function(function_id)[0]
    # When
    configs = [
        props(c)
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
        if synthesized.target(props(c)["FunctionName"]) == function_logical_id
    ]
    # Then: Lambda retries a raising run (every scheduled job is idempotent), then reports it beside the deliveries
    assert len(configs) == 1
    assert 1 <= configs[0]["MaximumRetryAttempts"] <= 2
    destination = configs[0]["DestinationConfig"]["OnFailure"]["Destination"]
    assert synthesized.target(destination) == _dead_letter_queue_id(synthesized, function_id)


def test_only_scheduled_functions_have_an_async_failure_destination(synthesized: SynthesizedStage) -> None:
    configured = {
        synthesized.target(props(c)["FunctionName"])
        for c in synthesized.of_type("AWS::Lambda::EventInvokeConfig").values()
    }
    assert configured == {synthesized.function(f)[0] for f in SCHEDULED_FUNCTIONS}


@pytest.mark.parametrize("function_id", SCHEDULED_FUNCTIONS)
def test_each_schedule_dlq_is_alarmed(synthesized: SynthesizedStage, function_id: str) -> None:
    # Given
    dlq_id = _dead_letter_queue_id(synthesized, function_id)
    assert synthesized.resources[dlq_id]["Type"] == "AWS::SQS::Queue"
    assert props(synthesized.resources[dlq_id])["MessageRetentionPeriod"] == 14 * 24 * 3600
    if synthesized.stage.monitoring == "lean" and f"{function_id}-schedule" not in PAGING_DEAD_LETTER_QUEUES:
        return  # lean monitoring alarms only on the dead-letter queues that page
    # When
    alarm = props(synthesized.alarm(f"{function_id}-schedule-dlq-not-empty"))
    # Then
    assert synthesized.alarms_watching("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq_id}) == [
        synthesized.alarm(f"{function_id}-schedule-dlq-not-empty")
    ]
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_a_stage_cannot_reconcile_before_it_bills() -> None:
    # Given: prod's settings with the reconciliation moved to before the nightly run
    stage = load_stage("prod")
    settings = stage.model_dump(exclude={"name"})
    # When / Then
    with pytest.raises(ValidationError, match="later in the day than billing"):
        StageConfig(name="prod", **{**settings, "reconcile_hour": 0, "reconcile_minute": 15})


def test_the_inputs_are_the_ones_the_handlers_dispatch_on() -> None:
    # Given the sources the handlers recognise
    from functions.billing import handler as billing
    from functions.metering import handler as metering

    # Then the schedules send exactly those (anything else would make billing close a day instead)
    assert SCHEDULES["reconciliation"] == ("billing", {"source": billing.RECONCILE})
    assert SCHEDULES["outbox-drain"] == ("metering", {"source": metering.OUTBOX_DRAIN})
