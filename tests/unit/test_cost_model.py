"""bench/cost.py's reading of templates: what CloudWatch bills an alarm as, how often a schedule runs."""

from __future__ import annotations

from bench.cost import (
    SECONDS_PER_MONTH,
    Stage,
    _schedule_invocations_per_month,
    alarm_metrics,
    idle_lines,
    per_million_chats,
    with_chat_memory,
)


def test_an_alarm_bills_per_metric_and_an_anomaly_band_as_three() -> None:
    plain = {"Properties": {"MetricName": "Errors"}}
    math = {"Properties": {"Metrics": [{"MetricStat": {}}, {"MetricStat": {}}, {"Expression": "m1/m2"}]}}
    band = {"Properties": {"Metrics": [{"MetricStat": {}}, {"Expression": "ANOMALY_DETECTION_BAND(m1, 3)"}]}}
    assert [alarm_metrics(plain), alarm_metrics(math), alarm_metrics(band)] == [1, 2, 3]


def test_schedules_run_as_often_as_their_rate_says() -> None:
    assert _schedule_invocations_per_month("rate(5 minutes)") == SECONDS_PER_MONTH / 300
    assert _schedule_invocations_per_month("rate(1 hour)") == SECONDS_PER_MONTH / 3600
    assert _schedule_invocations_per_month("cron(0 1 * * ? *)") == 30


def chat_stage() -> Stage:
    return Stage(
        "prod",
        {
            "Chat": {
                "Type": "AWS::Lambda::Function",
                "Properties": {
                    "FunctionName": "x-chat",
                    "MemorySize": 2048,
                    "SnapStart": {"ApplyOn": "PublishedVersions"},
                },
            },
            "Other": {"Type": "AWS::Lambda::Function", "Properties": {"FunctionName": "x-billing", "MemorySize": 512}},
        },
    )


def test_a_snapstart_function_holds_its_memory_in_the_cache_all_month() -> None:
    lines = idle_lines(chat_stage())
    assert round(lines["snapstart_cache"], 2) == round(2 * SECONDS_PER_MONTH * 0.0000015046, 2)
    assert lines["alarms"] == 0 and lines["dashboards"] == 0


def test_a_smaller_chat_function_caches_and_bills_its_duration_by_its_own_memory() -> None:
    warm = {
        "p50_ms": 50.0,
        "aws_calls_by_operation": {"dynamodb.UpdateItem": 3},
        "dynamodb_items_per_chat": {},
        "log_bytes_per_chat": 1_000,
    }
    metering = {"batch_size": 25, "results": {"dynamodb_local": {"spread": {"items_written_per_event": 1.0}}}}
    stage, smaller = chat_stage(), with_chat_memory(chat_stage(), 1024)
    assert idle_lines(smaller)["snapstart_cache"] * 2 == idle_lines(stage)["snapstart_cache"]
    duration = per_million_chats(stage, warm, metering)["chat_function_duration"]
    assert per_million_chats(smaller, warm, metering)["chat_function_duration"] * 2 == duration
    assert stage.resources["Chat"]["Properties"]["MemorySize"] == 2048  # the stage itself is left as it was
