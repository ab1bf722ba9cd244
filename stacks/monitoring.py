"""Alarms that page (through one SNS topic) and a dashboard that shows how DocuChat is doing."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from shared.resources import physical_name
from stacks.stage_config import StageConfig, metrics_namespace

# Custom metrics the code emits through shared.observability (Powertools: dimension service=<function id>).
LLM_CALL_FAILURES = "LLMCallFailures"
EMBEDDING_FAILURES = "EmbeddingFailures"
BILLING_RUN_FAILED = "BillingRunFailed"
TOKENS_METERED = "TokensMetered"
CHAT_REQUESTS = "ChatRequests"
RECONCILIATION_MISMATCHES = "ReconciliationMismatches"
PAYMENTS_REJECTED = "PaymentsRejected"
USAGE_EVENTS_LATE = "UsageEventsLate"
USAGE_EVENTS_DUPLICATE = "UsageEventsDuplicate"
USAGE_EVENTS_PARKED = "UsageEventsParked"
REQUESTS_RATE_LIMITED = "RequestsRateLimited"
REQUESTS_BUDGET_REFUSED = "RequestsBudgetRefused"
ESCALATIONS = "Escalations"
WEBHOOK_DELIVERY_FAILURES = "WebhookDeliveryFailures"

PERIOD = Duration.minutes(5)
API_5XX_PERCENT = 5
API_P95_LATENCY_MS = 2000
# One failed upstream call is a blip the retries absorb; this many in five minutes means the LLM is in trouble.
LLM_FAILURES_PER_PERIOD = 3
# The reconciliation runs once a night; a day-long period keeps a mismatch in ALARM until the next night's check.
RECONCILIATION_PERIOD = Duration.days(1)
# A payer's browser may replay a callback now and then; a burst of refusals means forgeries or a wrong merchant.
PAYMENTS_REJECTED_WINDOW = Duration.minutes(15)
PAYMENTS_REJECTED_PER_WINDOW = 5
# Tokens metered per hour against CloudWatch's learned band (daily and weekly seasonality): a runaway client shows
# as hours above it. Three standard deviations and two of three hours keep ordinary busy days quiet.
TOKEN_ANOMALY_PERIOD = Duration.hours(1)
TOKEN_ANOMALY_STD_DEVS = 3
TOKEN_ANOMALY_EVALUATION_PERIODS = 3
TOKEN_ANOMALY_DATAPOINTS_TO_ALARM = 2

_ALARM_ON_ANY = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD


class Monitoring(Construct):
    """`alarms` lists every alarm; all of them notify `topic`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        http_api: apigwv2.HttpApi,
        functions: dict[str, lambda_.Function],
        queues: dict[str, sqs.IQueue],
        dead_letter_queues: dict[str, sqs.IQueue],
    ) -> None:
        super().__init__(scope, construct_id)
        self._stage = stage
        self.topic = sns.Topic(self, "AlarmTopic", topic_name=physical_name(stage.name, "alarms"))
        if stage.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(stage.alarm_email))
        self.alarms: list[cloudwatch.Alarm] = []

        self._api_alarms(http_api)
        for function_id, function in functions.items():
            self._function_alarms(function_id, function)
        for name, dead_letter_queue in dead_letter_queues.items():
            self._alarm(
                f"{name}-dlq-not-empty",
                metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                    period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
                ),
                threshold=1,
                description=f"Messages in the {name} dead-letter queue: work that failed every retry",
            )
        self._alarm(
            "llm-call-failures",
            metric=self.custom_metric(LLM_CALL_FAILURES, service="chat"),
            threshold=LLM_FAILURES_PER_PERIOD,
            description="Calls to the LLM are failing (after retries)",
        )
        self._alarm(
            "embedding-failures",
            metric=self.custom_metric(EMBEDDING_FAILURES, service="chat"),
            threshold=LLM_FAILURES_PER_PERIOD,
            description="Embedding questions fails (after retries); retrieval is keyword-only meanwhile",
        )
        self._alarm(
            "billing-run-failed",
            metric=self.custom_metric(BILLING_RUN_FAILED, service="billing"),
            threshold=1,
            description="A billing run failed; invoices for that day may be missing (re-running is safe)",
        )
        self._money_alarms()
        self.dashboard = self._dashboard(http_api, functions, {**queues, **_suffixed(dead_letter_queues, "dlq")})

    def custom_metric(self, metric_name: str, *, service: str, period: Duration = PERIOD) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=metrics_namespace(self._stage.name),
            metric_name=metric_name,
            dimensions_map={"service": service},
            statistic=cloudwatch.Stats.SUM,
            period=period,
        )

    def _money_alarms(self) -> None:
        """Invariants 1 and 2 watched in production: counts that disagree, tokens out of the ordinary, forgeries."""
        self._alarm(
            "reconciliation-mismatch",
            metric=self.custom_metric(RECONCILIATION_MISMATCHES, service="billing", period=RECONCILIATION_PERIOD),
            threshold=1,
            description="The nightly reconciliation found tenants whose invoiced tokens differ from the metered ones",
        )
        self._alarm(
            "payments-rejected",
            metric=self.custom_metric(PAYMENTS_REJECTED, service="chat", period=PAYMENTS_REJECTED_WINDOW),
            threshold=PAYMENTS_REJECTED_PER_WINDOW,
            description=f"{PAYMENTS_REJECTED_PER_WINDOW} or more payment callbacks refused in "
            f"{int(PAYMENTS_REJECTED_WINDOW.to_minutes())} minutes: forged callbacks or a misconfigured merchant",
        )
        self._notify(
            cloudwatch.AnomalyDetectionAlarm(
                self,
                _construct_id("token-consumption-anomaly"),
                alarm_name=physical_name(self._stage.name, "token-consumption-anomaly"),
                alarm_description="Tokens metered per hour above the expected band: a runaway client or abuse",
                metric=self.custom_metric(TOKENS_METERED, service="metering", period=TOKEN_ANOMALY_PERIOD),
                std_devs=TOKEN_ANOMALY_STD_DEVS,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_UPPER_THRESHOLD,
                evaluation_periods=TOKEN_ANOMALY_EVALUATION_PERIODS,
                datapoints_to_alarm=TOKEN_ANOMALY_DATAPOINTS_TO_ALARM,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        )

    def _api_alarms(self, http_api: apigwv2.HttpApi) -> None:
        error_rate = cloudwatch.MathExpression(
            expression="IF(requests > 0, 100 * errors / requests, 0)",
            using_metrics={
                "errors": http_api.metric_server_error(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                "requests": http_api.metric_count(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            },
            label="5xx (% of requests)",
            period=PERIOD,
        )
        self._alarm(
            "api-5xx-rate",
            metric=error_rate,
            threshold=API_5XX_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,  # two bad periods out of three, so one burst does not page
            description=f"More than {API_5XX_PERCENT}% of API requests answered with a 5xx",
        )
        self._alarm(
            "api-p95-latency",
            metric=http_api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.percentile(95)),
            threshold=API_P95_LATENCY_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            description=f"API p95 latency above {API_P95_LATENCY_MS} ms for 15 minutes",
        )

    def _function_alarms(self, function_id: str, function: lambda_.Function) -> None:
        self._alarm(
            f"{function_id}-errors",
            metric=function.metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=1,
            description=f"The {function_id} function raised (an invocation failed, not a handled 4xx)",
        )
        self._alarm(
            f"{function_id}-throttles",
            metric=function.metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
            threshold=1,
            description=f"The {function_id} function was throttled (account or reserved concurrency reached)",
        )

    def _alarm(
        self,
        name: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = _ALARM_ON_ANY,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            _construct_id(name),
            alarm_name=physical_name(self._stage.name, name),
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            datapoints_to_alarm=datapoints_to_alarm,
            # No data means no requests, no failures, no messages: nothing is wrong.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return self._notify(alarm)

    def _notify(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def _dashboard(
        self,
        http_api: apigwv2.HttpApi,
        functions: dict[str, lambda_.Function],
        queues: dict[str, sqs.IQueue],
    ) -> cloudwatch.Dashboard:
        def graph(title: str, metrics: list[cloudwatch.IMetric], width: int = 8) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=metrics, width=width, height=6)

        sum_ = cloudwatch.Stats.SUM
        return cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=physical_name(self._stage.name, "overview"),
            widgets=[
                [
                    graph("API requests", [http_api.metric_count(period=PERIOD, statistic=sum_)]),
                    graph(
                        "API latency (ms)",
                        [
                            http_api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.percentile(p))
                            for p in (50, 95, 99)
                        ],
                    ),
                    graph(
                        "API errors",
                        [
                            http_api.metric_server_error(period=PERIOD, statistic=sum_),
                            http_api.metric_client_error(period=PERIOD, statistic=sum_),
                        ],
                    ),
                ],
                [
                    graph(
                        "Function errors", [f.metric_errors(period=PERIOD, statistic=sum_) for f in functions.values()]
                    ),
                    graph(
                        "Function duration p95 (ms)",
                        [
                            f.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.percentile(95))
                            for f in functions.values()
                        ],
                    ),
                    graph(
                        "Function throttles",
                        [f.metric_throttles(period=PERIOD, statistic=sum_) for f in functions.values()],
                    ),
                ],
                [
                    graph(
                        "Queue depth (visible messages)",
                        [
                            queue.metric_approximate_number_of_messages_visible(
                                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM, label=name
                            )
                            for name, queue in queues.items()
                        ],
                    ),
                    graph(
                        "Oldest message age (s)",
                        [
                            queue.metric_approximate_age_of_oldest_message(
                                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM, label=name
                            )
                            for name, queue in queues.items()
                        ],
                    ),
                    cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(self.alarms), width=8, height=6),
                ],
                [
                    graph(metric_name, [self._every_service(metric_name)], width=6)
                    for metric_name in (TOKENS_METERED, CHAT_REQUESTS, LLM_CALL_FAILURES, USAGE_EVENTS_PARKED)
                ],
                [
                    graph(metric_name, [self._every_service(metric_name)], width=6)
                    for metric_name in (
                        RECONCILIATION_MISMATCHES,
                        PAYMENTS_REJECTED,
                        USAGE_EVENTS_LATE,
                        USAGE_EVENTS_DUPLICATE,
                    )
                ],
                [
                    graph(metric_name, [self._every_service(metric_name)], width=6)
                    for metric_name in (
                        REQUESTS_RATE_LIMITED,
                        REQUESTS_BUDGET_REFUSED,
                        ESCALATIONS,
                        WEBHOOK_DELIVERY_FAILURES,
                    )
                ],
            ],
        )

    def _every_service(self, metric_name: str) -> cloudwatch.MathExpression:
        """A custom metric summed per service, for whichever functions emit it (dashboards only: alarms
        cannot use SEARCH)."""
        search = f'{{{metrics_namespace(self._stage.name)},service}} MetricName="{metric_name}"'
        return cloudwatch.MathExpression(
            expression=f"SEARCH('{search}', 'Sum', {int(PERIOD.to_seconds())})",
            using_metrics={},
            label=metric_name,
            period=PERIOD,
        )


def _construct_id(name: str) -> str:
    """'chat-errors' -> 'ChatErrorsAlarm'."""
    return "".join(part.capitalize() for part in name.split("-")) + "Alarm"


def _suffixed(queues: dict[str, sqs.IQueue], suffix: str) -> dict[str, sqs.IQueue]:
    return {f"{name}-{suffix}": queue for name, queue in queues.items()}
