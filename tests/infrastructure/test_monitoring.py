"""Alarms (all paging through one SNS topic) and the dashboard."""

from __future__ import annotations

from typing import Any

import pytest

from shared.resources import FUNCTIONS, QUEUES, QueueSpec
from stacks import monitoring
from stacks.stage_config import metrics_namespace
from tests.infrastructure.synthesized import Resource, SynthesizedStage, dashboard_body, dashboard_widgets, props


def _only(alarms: list[Resource]) -> dict[str, Any]:
    assert len(alarms) == 1, f"expected one alarm, found {len(alarms)}"
    return props(alarms[0])


def test_alarms_page_through_one_topic(synthesized: SynthesizedStage) -> None:
    # Given
    topic_id = synthesized.with_id_prefix("AWS::SNS::Topic", "MonitoringAlarmTopic")
    alarms = synthesized.of_type("AWS::CloudWatch::Alarm")
    # Then
    assert alarms
    for alarm in alarms.values():
        assert synthesized.targets(props(alarm)["AlarmActions"]) == {topic_id}


def test_the_alarm_email_is_subscribed_where_the_stage_names_one(synthesized: SynthesizedStage) -> None:
    subscriptions = [props(s) for s in synthesized.of_type("AWS::SNS::Subscription").values()]
    if synthesized.stage.alarm_email:
        assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", synthesized.stage.alarm_email)]
    else:
        assert subscriptions == []


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
    alarm = _only(synthesized.alarms_watching("AWS/ApiGateway", "Latency", {"ApiId": api_id}))
    assert alarm["ExtendedStatistic"] == "p95"
    assert alarm["Threshold"] == 2000
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


@pytest.mark.parametrize("function_id", sorted(FUNCTIONS))
@pytest.mark.parametrize("metric_name", ["Errors", "Throttles"])
def test_each_function_alarms_on_errors_and_throttles(
    synthesized: SynthesizedStage, function_id: str, metric_name: str
) -> None:
    function_id_in_template, _ = synthesized.function(function_id)
    alarm = _only(synthesized.alarms_watching("AWS/Lambda", metric_name, {"FunctionName": function_id_in_template}))
    assert alarm["Statistic"] == "Sum"
    assert alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize("queue_spec", QUEUES, ids=lambda q: q.id)
def test_each_dead_letter_queue_alarms_when_not_empty(synthesized: SynthesizedStage, queue_spec: QueueSpec) -> None:
    dlq_id, _ = synthesized.queue(queue_spec.dlq_physical_name(synthesized.stage.name))
    alarm = _only(synthesized.alarms_watching("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq_id}))
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


@pytest.mark.parametrize("metric_name", ["LLMCallFailures", "EmbeddingFailures"])
def test_model_call_failures_alarm(synthesized: SynthesizedStage, metric_name: str) -> None:
    namespace = metrics_namespace(synthesized.stage.name)
    alarm = _only(synthesized.alarms_watching(namespace, metric_name, {"service": "chat"}))
    assert alarm["Statistic"] == "Sum"
    assert alarm["Period"] == 300
    assert alarm["Threshold"] >= 1
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
    alarm = _only(synthesized.alarms_watching(namespace, "PaymentsRejected", {"service": "chat"}))
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
    alarm = _only(synthesized.alarms_watching(namespace, "TokensMetered", {"service": "metering"}))
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


def test_the_dashboard_shows_api_functions_queues_and_custom_metrics(synthesized: SynthesizedStage) -> None:
    body = dashboard_body(synthesized)
    for shown in (
        "AWS/ApiGateway",
        '\\"Count\\"',
        '\\"Latency\\"',
        '\\"5xx\\"',
        '\\"Errors\\"',
        '\\"Duration\\"',
        "ApproximateNumberOfMessagesVisible",
        "TokensMetered",
        "ChatRequests",
        "LLMCallFailures",
        "ReconciliationMismatches",
        "PaymentsRejected",
        "UsageEventsLate",
        "UsageEventsDuplicate",
        metrics_namespace(synthesized.stage.name),
    ):
        assert shown in body, shown


@pytest.mark.parametrize(
    "metric_name",
    [
        "TokensMetered",
        "ChatRequests",
        "LLMCallFailures",
        "ReconciliationMismatches",
        "PaymentsRejected",
        "UsageEventsLate",
        "UsageEventsDuplicate",
        "UsageEventsParked",
    ],
)
def test_the_dashboard_graphs_each_custom_metric_across_services(
    synthesized: SynthesizedStage, metric_name: str
) -> None:
    # Given
    search = f'{{{metrics_namespace(synthesized.stage.name)},service}} MetricName="{metric_name}"'
    # When
    graphs = {
        widget["properties"]["title"]: _expressions(widget)
        for widget in dashboard_widgets(synthesized)
        if any(search in expression for expression in _expressions(widget))
    }
    # Then: one graph of its own, summed per service
    assert graphs == {metric_name: [f"SEARCH('{search}', 'Sum', 300)"]}


def _expressions(widget: dict[str, Any]) -> list[str]:
    """The math expressions a graph widget plots."""
    rows = widget["properties"].get("metrics", []) if widget["type"] == "metric" else []
    return [item["expression"] for row in rows for item in row if isinstance(item, dict) and "expression" in item]


def test_alarmed_metric_names_are_the_ones_the_code_emits() -> None:
    # Given the names the functions emit (shared.observability)
    from shared import observability

    # Then the stacks watch the same names
    assert monitoring.LLM_CALL_FAILURES == observability.LLM_CALL_FAILURES
    assert monitoring.EMBEDDING_FAILURES == observability.EMBEDDING_FAILURES
    assert monitoring.BILLING_RUN_FAILED == observability.BILLING_RUN_FAILED
    assert monitoring.TOKENS_METERED == observability.TOKENS_METERED
    assert monitoring.CHAT_REQUESTS == observability.CHAT_REQUESTS
    assert monitoring.RECONCILIATION_MISMATCHES == observability.RECONCILIATION_MISMATCHES
    assert monitoring.PAYMENTS_REJECTED == observability.PAYMENTS_REJECTED
    assert monitoring.USAGE_EVENTS_LATE == observability.USAGE_EVENTS_LATE
    assert monitoring.USAGE_EVENTS_DUPLICATE == observability.USAGE_EVENTS_DUPLICATE
    assert monitoring.USAGE_EVENTS_PARKED == observability.USAGE_EVENTS_PARKED
    assert monitoring.REQUESTS_RATE_LIMITED == observability.RATE_LIMITED
    assert monitoring.REQUESTS_BUDGET_REFUSED == observability.BUDGET_REFUSED
    assert monitoring.ESCALATIONS == observability.ESCALATIONS
    assert monitoring.WEBHOOK_DELIVERY_FAILURES == observability.WEBHOOK_DELIVERY_FAILURES
