"""Alarms (the paging ones behind one composite alarm in "full" monitoring), the dashboards, and their idle cost."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.resources import QUEUES, QueueSpec
from stacks import monitoring
from stacks.stage_config import metrics_namespace
from tests.infrastructure.synthesized import Resource, SynthesizedStage, dashboard_body, dashboard_widgets, props

RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbooks" / "alarms.md"
PAGING = {"api-5xx-rate", "usage-dlq-not-empty", "billing-schedule-dlq-not-empty", "billing-run-failed",
          "reconciliation-mismatch"}  # fmt: skip
# Idle cost a month (CloudWatch and Secrets Manager list prices): what the stages must stay under, all included.
ALARM_METRIC_USD, ANOMALY_BAND_METRICS, COMPOSITE_USD, DASHBOARD_USD, SECRET_USD = 0.10, 3, 0.50, 3.00, 0.40
IDLE_LIMIT_USD = {"dev": 3.00, "staging": 10.00, "prod": 10.00}


def _only(alarms: list[Resource]) -> dict[str, Any]:
    assert len(alarms) == 1, f"expected one alarm, found {len(alarms)}"
    return props(alarms[0])


def _full(synthesized: SynthesizedStage) -> bool:
    return synthesized.stage.monitoring == "full"


def _short_names(synthesized: SynthesizedStage) -> dict[str, Resource]:
    prefix = f"docuchat-{synthesized.stage.name}-"
    return {
        props(alarm)["AlarmName"].removeprefix(prefix): alarm
        for alarm in synthesized.of_type("AWS::CloudWatch::Alarm").values()
    }


def _topic(synthesized: SynthesizedStage, prefix: str) -> str:
    return synthesized.with_id_prefix("AWS::SNS::Topic", prefix)


def test_full_monitoring_pages_through_one_composite_alarm_over_the_paging_alarms(
    synthesized: SynthesizedStage,
) -> None:
    if not _full(synthesized):
        pytest.skip("lean monitoring has no composite alarm")
    # Given
    alarms = _short_names(synthesized)
    alarm_topic = _topic(synthesized, "MonitoringAlarmTopic")
    notice_topic = _topic(synthesized, "MonitoringNoticeTopic")
    # When
    _, pager = synthesized.one_of_type("AWS::CloudWatch::CompositeAlarm")
    rule = synthesized.text_of(props(pager)["AlarmRule"])
    # Then: the composite is ALARM when any paging alarm is, and it alone notifies the alarm topic
    ids = {props(alarm)["AlarmName"]: rid for rid, alarm in synthesized.of_type("AWS::CloudWatch::Alarm").items()}
    children = {name for name, alarm in alarms.items() if f"${{{ids[props(alarm)['AlarmName']]}.Arn}}" in rule}
    assert children == PAGING
    assert rule.count(" OR ") == len(PAGING) - 1
    assert synthesized.targets(props(pager)["AlarmActions"]) == {alarm_topic}
    # And the paging alarms notify nobody themselves; every other alarm notifies the notices topic
    for name, alarm in alarms.items():
        actions = synthesized.targets(props(alarm).get("AlarmActions", []))
        assert actions == (set() if name in PAGING else {notice_topic}), name


def test_lean_monitoring_has_only_the_paging_alarms_each_notifying_the_alarm_topic(
    synthesized: SynthesizedStage,
) -> None:
    if _full(synthesized):
        pytest.skip("full monitoring pages through its composite alarm")
    alarm_topic = _topic(synthesized, "MonitoringAlarmTopic")
    alarms = _short_names(synthesized)
    assert set(alarms) == PAGING
    for alarm in alarms.values():
        assert synthesized.targets(props(alarm)["AlarmActions"]) == {alarm_topic}
    assert synthesized.of_type("AWS::CloudWatch::CompositeAlarm") == {}
    assert synthesized.of_type("AWS::CloudWatch::Dashboard") == {}


def test_dev_is_lean_and_prod_full() -> None:
    from stacks.stage_config import load_stage

    assert load_stage("dev").monitoring == "lean"
    assert load_stage("prod").monitoring == "full"


def test_the_alarm_email_is_subscribed_where_the_stage_names_one(synthesized: SynthesizedStage) -> None:
    # Given the alarm topic (the pager's); the notices topic has no subscription of its own
    alarm_topic = _topic(synthesized, "MonitoringAlarmTopic")
    subscriptions = [props(s) for s in synthesized.of_type("AWS::SNS::Subscription").values()]
    # Then
    if synthesized.stage.alarm_email:
        assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", synthesized.stage.alarm_email)]
        assert synthesized.targets(subscriptions[0]["TopicArn"]) == {alarm_topic}
    else:
        assert subscriptions == []


def test_idle_monitoring_cost_stays_under_the_stage_limit(synthesized: SynthesizedStage) -> None:
    # Given what CloudWatch bills a month whether or not anything happens
    alarm_metrics = 0
    for alarm in synthesized.of_type("AWS::CloudWatch::Alarm").values():
        queries = props(alarm).get("Metrics", [])
        read = sum("MetricStat" in q for q in queries) or 1
        anomaly = any("ANOMALY_DETECTION_BAND" in q.get("Expression", "") for q in queries)
        alarm_metrics += read * (ANOMALY_BAND_METRICS if anomaly else 1)
    composites = len(synthesized.of_type("AWS::CloudWatch::CompositeAlarm"))
    dashboards = len(synthesized.of_type("AWS::CloudWatch::Dashboard"))
    secrets = len(synthesized.of_type("AWS::SecretsManager::Secret"))
    # When every dashboard is billed (an account's first three are free, but others may use them)
    cost = alarm_metrics * ALARM_METRIC_USD + composites * COMPOSITE_USD + dashboards * DASHBOARD_USD
    cost += secrets * SECRET_USD
    # Then the stage stays under its limit, with the alarm metrics the docs give
    assert cost <= IDLE_LIMIT_USD[synthesized.stage.name], (alarm_metrics, composites, dashboards, secrets)
    assert alarm_metrics == (22 if _full(synthesized) else 6)


def test_every_alarm_is_in_the_runbook(synthesized: SynthesizedStage) -> None:
    runbook = RUNBOOK.read_text()
    for name in _short_names(synthesized):
        assert f"`{name}`" in runbook, name


def test_api_5xx_rate_alarm(synthesized: SynthesizedStage) -> None:
    # Given
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    # When
    alarm = _only(synthesized.alarms_watching("AWS/ApiGateway", "5xx", {"ApiId": api_id}))
    # Then: a percentage of the request count, above 5
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    expression = next(q["Expression"] for q in queries.values() if "Expression" in q)
    inputs = {q["Id"]: q["MetricStat"]["Metric"]["MetricName"] for q in queries.values() if "MetricStat" in q}
    assert sorted(inputs.values()) == ["5xx", "Count"]
    assert all(query_id in expression for query_id in inputs)
    assert "100" in expression
    assert alarm["Threshold"] == 5
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_api_p95_latency_alarm(synthesized: SynthesizedStage) -> None:
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    alarms = synthesized.alarms_watching("AWS/ApiGateway", "Latency", {"ApiId": api_id})
    if not _full(synthesized):
        assert alarms == []
        return
    alarm = _only(alarms)
    assert alarm["ExtendedStatistic"] == "p95"
    assert alarm["Threshold"] == 2000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize(
    ("function_id", "metric_name"), [("metering", "Errors"), ("stream", "Errors"), ("stream", "Throttles")]
)
def test_function_errors_and_throttles_no_other_alarm_sees(
    synthesized: SynthesizedStage, function_id: str, metric_name: str
) -> None:
    function_id_in_template, _ = synthesized.function(function_id)
    alarms = synthesized.alarms_watching("AWS/Lambda", metric_name, {"FunctionName": function_id_in_template})
    if not _full(synthesized):
        assert alarms == []
        return
    alarm = _only(alarms)
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("queue_spec", QUEUES, ids=lambda q: q.id)
def test_each_dead_letter_queue_alarms_when_not_empty(synthesized: SynthesizedStage, queue_spec: QueueSpec) -> None:
    dlq_id, _ = synthesized.queue(queue_spec.dlq_physical_name(synthesized.stage.name))
    alarms = synthesized.alarms_watching("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq_id})
    if not _full(synthesized) and queue_spec.id not in monitoring.PAGING_DEAD_LETTER_QUEUES:
        assert alarms == []
        return
    alarm = _only(alarms)
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_usage_events_metering_gave_up_on_page_as_the_usage_dlq_not_empty(synthesized: SynthesizedStage) -> None:
    # Given: the DLQ of the queue the metering function consumes
    usage_dlq_id, _ = synthesized.queue(f"docuchat-{synthesized.stage.name}-usage-dlq")
    _, usage_queue = synthesized.queue(f"docuchat-{synthesized.stage.name}-usage")
    assert synthesized.target(props(usage_queue)["RedrivePolicy"]["deadLetterTargetArn"]) == usage_dlq_id
    # When
    alarm = props(synthesized.alarm("usage-dlq-not-empty"))
    # Then: the runbook's "usage DLQ not empty" is this alarm, on that queue, at the first message
    assert synthesized.targets(alarm["Dimensions"]) == {usage_dlq_id}
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(("metric_name", "threshold"), [("LLMCallFailures", 3), ("LLMFallbacks", 5)])
def test_model_alarms_sum_both_answering_functions(
    synthesized: SynthesizedStage, metric_name: str, threshold: int
) -> None:
    namespace = metrics_namespace(synthesized.stage.name)
    by_service = {
        service: synthesized.alarms_watching(namespace, metric_name, {"service": service})
        for service in ("chat", "stream")
    }
    if not _full(synthesized):
        assert by_service == {"chat": [], "stream": []}
        return
    # Then one alarm reads both the chat and the stream function's count, filled with 0 where one has none
    assert by_service["chat"] == by_service["stream"]
    alarm = _only(by_service["chat"])
    expression = next(q["Expression"] for q in alarm["Metrics"] if "Expression" in q)
    assert expression == "FILL(chat, 0) + FILL(stream, 0)"
    assert {q["MetricStat"]["Stat"] for q in alarm["Metrics"] if "MetricStat" in q} == {"Sum"}
    assert alarm["Threshold"] == threshold
    assert alarm["TreatMissingData"] == "notBreaching"


def test_billing_run_failed_alarm(synthesized: SynthesizedStage) -> None:
    namespace = metrics_namespace(synthesized.stage.name)
    alarm = _only(synthesized.alarms_watching(namespace, "BillingRunFailed", {"service": "billing"}))
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"


def test_reconciliation_mismatch_alarm(synthesized: SynthesizedStage) -> None:
    # When
    namespace = metrics_namespace(synthesized.stage.name)
    alarm = _only(synthesized.alarms_watching(namespace, "ReconciliationMismatches", {"service": "billing"}))
    # Then: one mismatch in the nightly run's day pages, and stays paged for that day
    assert alarm["AlarmName"] == f"docuchat-{synthesized.stage.name}-reconciliation-mismatch"
    assert alarm["Statistic"] == "Sum"
    assert 3600 <= alarm["Period"] <= 86400
    assert alarm["EvaluationPeriods"] == 1
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_payments_rejected_alarm(synthesized: SynthesizedStage) -> None:
    # When
    namespace = metrics_namespace(synthesized.stage.name)
    alarms = synthesized.alarms_watching(namespace, "PaymentsRejected", {"service": "chat"})
    if not _full(synthesized):
        assert alarms == []
        return
    alarm = _only(alarms)
    # Then: five refused callbacks within 15 minutes
    assert alarm["AlarmName"] == f"docuchat-{synthesized.stage.name}-payments-rejected"
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] * alarm["EvaluationPeriods"] == 900
    assert alarm["Threshold"] == 5
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


def test_token_consumption_anomaly_alarm(synthesized: SynthesizedStage) -> None:
    # When
    namespace = metrics_namespace(synthesized.stage.name)
    alarms = synthesized.alarms_watching(namespace, "TokensMetered", {"service": "metering"})
    if not _full(synthesized):
        assert alarms == []
        return
    alarm = _only(alarms)
    queries = {q["Id"]: q for q in alarm["Metrics"]}
    metric_id = next(query_id for query_id, q in queries.items() if "MetricStat" in q)
    # Then: hourly sums against a 3-standard-deviation anomaly band, alarming only above it
    assert alarm["AlarmName"] == f"docuchat-{synthesized.stage.name}-token-consumption-anomaly"
    assert queries[metric_id]["MetricStat"]["Stat"] == "Sum"
    assert queries[metric_id]["MetricStat"]["Period"] == 3600
    band = queries[alarm["ThresholdMetricId"]]
    assert band["Expression"] == f"ANOMALY_DETECTION_BAND({metric_id}, 3)"
    assert alarm["ComparisonOperator"] == "GreaterThanUpperThreshold"
    assert "Threshold" not in alarm
    assert 2 <= alarm["EvaluationPeriods"] <= 6
    assert 1 <= alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]) <= alarm["EvaluationPeriods"]
    assert alarm["TreatMissingData"] == "notBreaching"


def test_no_alarm_pages_for_missing_data(synthesized: SynthesizedStage) -> None:
    # Then: no data means no traffic, no failures, no messages, no run yet
    missing = {
        props(a)["AlarmName"]: props(a).get("TreatMissingData")
        for a in synthesized.of_type("AWS::CloudWatch::Alarm").values()
    }
    assert set(missing.values()) == {"notBreaching"}, missing


def test_full_monitoring_has_two_dashboards(synthesized: SynthesizedStage) -> None:
    names = {props(d)["DashboardName"] for d in synthesized.of_type("AWS::CloudWatch::Dashboard").values()}
    stage = synthesized.stage.name
    assert names == (
        {f"docuchat-{stage}-overview", f"docuchat-{stage}-tokens-and-billing"} if _full(synthesized) else set()
    )


def _search(synthesized: SynthesizedStage, metric_name: str, dimensions: str = "", statistic: str = "Sum") -> str:
    schema = ",".join(filter(None, [metrics_namespace(synthesized.stage.name), dimensions, "service"]))
    return f"SEARCH('{{{schema}}} MetricName=\"{metric_name}\"', '{statistic}', 300)"


def _expressions(widgets: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each graph's title and the math expressions it plots."""
    return {
        widget["properties"]["title"]: [
            item["expression"]
            for row in widget["properties"].get("metrics", [])
            for item in row
            if isinstance(item, dict) and "expression" in item
        ]
        for widget in widgets
        if widget["type"] == "metric"
    }


def test_the_service_dashboard_shows_requests_latency_errors_models_cache_and_queues(
    synthesized: SynthesizedStage,
) -> None:
    if not _full(synthesized):
        pytest.skip("lean monitoring has no dashboards")
    # When
    body = dashboard_body(synthesized, "overview")
    plotted = [e for exprs in _expressions(dashboard_widgets(synthesized, "overview")).values() for e in exprs]
    # Then: API Gateway's own figures, p50/p95/p99, function errors and throttles, queue and DLQ depths
    for shown in ('\\"Count\\"', '\\"Latency\\"', '\\"5xx\\"', '\\"4xx\\"', '\\"Errors\\"', '\\"Throttles\\"'):
        assert shown in body, shown
    for percentile in ("p50", "p95", "p99"):
        assert f'\\"stat\\":\\"{percentile}\\"' in body, percentile
    assert "ApproximateNumberOfMessagesVisible" in body and "usage-dlq" in body
    # And our own: requests and latency by route, LLM calls by model, failures, fallbacks, cache hits
    for expression in (
        _search(synthesized, "RequestLatency", "route", "SampleCount"),
        _search(synthesized, "RequestLatency", "route", "p95"),
        _search(synthesized, "LLMCalls", "model"),
        _search(synthesized, "LLMCallFailures"),
        _search(synthesized, "LLMFallbacks"),
        _search(synthesized, "LLMBreakerOpened"),
        _search(synthesized, "ResponseCacheHits"),
        _search(synthesized, "RAGQueries"),
        _search(synthesized, "RequestsRateLimited"),
        _search(synthesized, "RequestsBudgetRefused"),
    ):
        assert expression in plotted, expression
    assert "alarm" in json.dumps([w["type"] for w in dashboard_widgets(synthesized, "overview")])


def test_the_tokens_dashboard_shows_tokens_by_model_and_kind_usage_events_and_billing(
    synthesized: SynthesizedStage,
) -> None:
    if not _full(synthesized):
        pytest.skip("lean monitoring has no dashboards")
    graphs = _expressions(dashboard_widgets(synthesized, "tokens-and-billing"))
    assert graphs["Tokens by model and kind"] == [_search(synthesized, "TokensMetered", "kind,model")]
    # Each usage-event and billing figure has a graph of its own, summed per service
    for metric_name in (
        "UsageEventsMetered",
        "UsageEventsDuplicate",
        "UsageEventsLate",
        "UsageEventsParked",
        "InvoicesCreated",
        "InvoicedTokens",
        "InvoicedTomans",
        "BillingRunFailed",
        "PaymentsRejected",
        "ReconciliationMismatches",
    ):
        assert graphs[metric_name] == [_search(synthesized, metric_name)], metric_name
    assert _search(synthesized, "EmbeddingTokens") in graphs["Embedding tokens (documents; questions)"]
