"""bench/cost.py's reading of templates: what CloudWatch bills an alarm as, how often a schedule runs."""

from __future__ import annotations

from bench.cost import SECONDS_PER_MONTH, Stage, _schedule_invocations_per_month, alarm_metrics, idle_lines


def test_an_alarm_bills_per_metric_and_an_anomaly_band_as_three() -> None:
    plain = {"Properties": {"MetricName": "Errors"}}
    math = {"Properties": {"Metrics": [{"MetricStat": {}}, {"MetricStat": {}}, {"Expression": "m1/m2"}]}}
    band = {"Properties": {"Metrics": [{"MetricStat": {}}, {"Expression": "ANOMALY_DETECTION_BAND(m1, 3)"}]}}
    assert [alarm_metrics(plain), alarm_metrics(math), alarm_metrics(band)] == [1, 2, 3]


def test_schedules_run_as_often_as_their_rate_says() -> None:
    assert _schedule_invocations_per_month("rate(5 minutes)") == SECONDS_PER_MONTH / 300
    assert _schedule_invocations_per_month("rate(1 hour)") == SECONDS_PER_MONTH / 3600
    assert _schedule_invocations_per_month("cron(0 1 * * ? *)") == 30


def test_a_snapstart_function_holds_its_memory_in_the_cache_all_month() -> None:
    stage = Stage(
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
    lines = idle_lines(stage)
    assert round(lines["snapstart_cache"], 2) == round(2 * SECONDS_PER_MONTH * 0.0000015046, 2)
    assert lines["alarms"] == 0 and lines["dashboards"] == 0
