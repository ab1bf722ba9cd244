"""Alarms, the one alarm that pages, and the dashboards that show how DocuChat is doing.

A stage's `monitoring` setting picks the set (the idle cost, per month, is $0.10 an alarm metric, an anomaly band
3 metrics, $0.50 a composite alarm, $3 a dashboard past an account's first three):
- "full" (prod): every alarm below (22 alarm metrics), one composite alarm over the paging ones that notifies the
  alarm topic (the on-call), the others notify the notices topic; two dashboards.
- "lean" (dev): only the paging alarms (6 alarm metrics), each notifying the alarm topic itself; no dashboards.
docs/runbooks/alarms.md lists them, with the cluster's alert rule each one carries over.
"""

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

from shared.observability import (
    BILLING_RUN_FAILED,
    BUDGET_REFUSED,
    CHAT_REQUESTS,
    CHUNKS_INGESTED,
    DOCUMENTS_FAILED,
    DOCUMENTS_INGESTED,
    EMBEDDING_FAILURES,
    EMBEDDING_TOKENS,
    ESCALATIONS,
    INVOICED_TOKENS,
    INVOICED_TOMANS,
    INVOICES_CREATED,
    LLM_BREAKER_OPENED,
    LLM_CALL_FAILURES,
    LLM_CALLS,
    LLM_DEGRADED,
    LLM_FALLBACKS,
    PAYMENTS_REJECTED,
    RAG_QUERIES,
    RATE_LIMITED,
    RECONCILIATION_MISMATCHES,
    REQUEST_ERRORS,
    REQUEST_LATENCY,
    RESPONSE_CACHE_HITS,
    TOKENS_METERED,
    USAGE_EVENTS_DUPLICATE,
    USAGE_EVENTS_LATE,
    USAGE_EVENTS_METERED,
    USAGE_EVENTS_PARKED,
    WEBHOOK_DELIVERY_FAILURES,
)
from shared.resources import physical_name
from stacks.stage_config import StageConfig, metrics_namespace

# The functions that answer questions (the HTTP API's and the streaming door's): model metrics are summed over both.
ANSWERING_SERVICES = ("chat", "stream")
# Dead-letter queues whose messages mean money not yet counted or invoiced: they page. The others notify.
PAGING_DEAD_LETTER_QUEUES = ("usage", "billing-schedule")
# Function errors and throttles that no other alarm sees: chat's become API 5xx (paged on), ingestion's, webhooks'
# and billing's reach their dead-letter queues; the stream door has no API in front, metering's are its retries.
FUNCTIONS_ALARMED_ON_ERRORS = ("metering", "stream")
FUNCTIONS_ALARMED_ON_THROTTLES = ("stream",)

PERIOD = Duration.minutes(5)
API_5XX_PERCENT = 5
API_P95_LATENCY_MS = 2000
# One failed upstream call is a blip the retries absorb; this many in five minutes means the LLM is in trouble.
LLM_FAILURES_PER_PERIOD = 3
# A fallback is a request the first model failed; this many in five minutes is the cluster's "excessive fallbacks".
LLM_FALLBACKS_PER_PERIOD = 5
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
    """`alarms` lists every alarm; `paging` those that should wake someone. In "full" monitoring `pager` (a
    composite alarm over `paging`) notifies `topic` and the rest notify `notices`; in "lean" `paging` notify `topic`
    themselves and there is nothing else."""

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
        self._full = stage.monitoring == "full"
        self.topic = sns.Topic(self, "AlarmTopic", topic_name=physical_name(stage.name, "alarms"))
        if stage.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(stage.alarm_email))
        # What should be looked at in working hours; subscribe the team's channel or ticket queue to it.
        self.notices: sns.Topic | None = None
        if self._full:
            self.notices = sns.Topic(self, "NoticeTopic", topic_name=physical_name(stage.name, "alarm-notices"))
        self.alarms: list[cloudwatch.AlarmBase] = []
        self.paging: list[cloudwatch.AlarmBase] = []

        self._paging_alarms(http_api, dead_letter_queues)
        self.pager: cloudwatch.CompositeAlarm | None = None
        self.dashboards: list[cloudwatch.Dashboard] = []
        if self._full:
            self._notice_alarms(http_api, functions, dead_letter_queues)
            self.pager = self._pager()
            all_queues = {**queues, **_suffixed(dead_letter_queues, "dlq")}
            self.dashboards = [self._service_dashboard(http_api, functions, all_queues), self._tokens_dashboard()]

    def custom_metric(
        self,
        metric_name: str,
        *,
        service: str,
        period: Duration = PERIOD,
        statistic: str = cloudwatch.Stats.SUM,
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=metrics_namespace(self._stage.name),
            metric_name=metric_name,
            dimensions_map={"service": service},
            statistic=statistic,
            period=period,
        )

    def answering_sum(self, metric_name: str) -> cloudwatch.MathExpression:
        """A custom metric summed over the chat and stream functions (an alarm is billed per metric it reads)."""
        inputs = {service: self.custom_metric(metric_name, service=service) for service in ANSWERING_SERVICES}
        return cloudwatch.MathExpression(
            expression=" + ".join(f"FILL({service}, 0)" for service in inputs),
            using_metrics=dict(inputs),
            label=metric_name,
            period=PERIOD,
        )

    # --- alarms ------------------------------------------------------------------------------------------------

    def _paging_alarms(self, http_api: apigwv2.HttpApi, dead_letter_queues: dict[str, sqs.IQueue]) -> None:
        """Customers failing, or money not counted or not invoiced: someone should look now."""
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
            paging=True,
            metric=error_rate,
            threshold=API_5XX_PERCENT,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=2,  # two bad periods out of three, so one burst does not page
            description=f"More than {API_5XX_PERCENT}% of API requests answered with a 5xx",
        )
        for name in PAGING_DEAD_LETTER_QUEUES:
            self._dead_letter_alarm(name, dead_letter_queues[name], paging=True)
        self._alarm(
            "billing-run-failed",
            paging=True,
            metric=self.custom_metric(BILLING_RUN_FAILED, service="billing"),
            threshold=1,
            description="A billing run failed; invoices for that day may be missing (re-running is safe)",
        )
        self._alarm(
            "reconciliation-mismatch",
            paging=True,
            metric=self.custom_metric(RECONCILIATION_MISMATCHES, service="billing", period=RECONCILIATION_PERIOD),
            threshold=1,
            description="The nightly reconciliation found tenants whose invoiced tokens differ from the metered ones",
        )

    def _notice_alarms(
        self,
        http_api: apigwv2.HttpApi,
        functions: dict[str, lambda_.Function],
        dead_letter_queues: dict[str, sqs.IQueue],
    ) -> None:
        """Worth a look in working hours: slowness, a model in trouble, retries running out, abuse."""
        self._alarm(
            "api-p95-latency",
            metric=http_api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.percentile(95)),
            threshold=API_P95_LATENCY_MS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=3,
            datapoints_to_alarm=3,
            description=f"API p95 latency above {API_P95_LATENCY_MS} ms for 15 minutes",
        )
        self._alarm(
            "llm-call-failures",
            metric=self.answering_sum(LLM_CALL_FAILURES),
            threshold=LLM_FAILURES_PER_PERIOD,
            description="Calls to the LLM are failing (after retries), in the chat or the stream function",
        )
        self._alarm(
            "llm-fallbacks",
            metric=self.answering_sum(LLM_FALLBACKS),
            threshold=LLM_FALLBACKS_PER_PERIOD,
            description=f"{LLM_FALLBACKS_PER_PERIOD} or more answers in 5 minutes came from a fallback model",
        )
        for function_id in FUNCTIONS_ALARMED_ON_ERRORS:
            self._alarm(
                f"{function_id}-errors",
                metric=functions[function_id].metric_errors(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                threshold=1,
                description=f"The {function_id} function raised (an invocation failed, not a handled 4xx)",
            )
        for function_id in FUNCTIONS_ALARMED_ON_THROTTLES:
            self._alarm(
                f"{function_id}-throttles",
                metric=functions[function_id].metric_throttles(period=PERIOD, statistic=cloudwatch.Stats.SUM),
                threshold=1,
                description=f"The {function_id} function was throttled (account or reserved concurrency reached)",
            )
        for name, queue in dead_letter_queues.items():
            if name not in PAGING_DEAD_LETTER_QUEUES:
                self._dead_letter_alarm(name, queue, paging=False)
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
            ),
            paging=False,
        )

    def _dead_letter_alarm(self, name: str, queue: sqs.IQueue, *, paging: bool) -> None:
        self._alarm(
            f"{name}-dlq-not-empty",
            paging=paging,
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=1,
            description=f"Messages in the {name} dead-letter queue: work that failed every retry",
        )

    def _pager(self) -> cloudwatch.CompositeAlarm:
        """One page for whichever paging alarms fire: ALARM while any of them is."""
        pager = cloudwatch.CompositeAlarm(
            self,
            "PagerAlarm",
            composite_alarm_name=physical_name(self._stage.name, "page"),
            alarm_description="A paging alarm is in ALARM: its name and what to do are in docs/runbooks/alarms.md",
            alarm_rule=cloudwatch.AlarmRule.any_of(*self.paging),
        )
        pager.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        return pager

    def _alarm(
        self,
        name: str,
        *,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        paging: bool = False,
        comparison: cloudwatch.ComparisonOperator = _ALARM_ON_ANY,
        evaluation_periods: int = 1,
        datapoints_to_alarm: int | None = None,
    ) -> None:
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
        self._notify(alarm, paging=paging)

    def _notify(self, alarm: cloudwatch.Alarm, *, paging: bool) -> None:
        """Paging alarms page through the composite (full) or themselves (lean); the others notify `notices`."""
        self.alarms.append(alarm)
        if paging:
            self.paging.append(alarm)
        if paging and not self._full:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        elif not paging and self.notices is not None:
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.notices))

    # --- dashboards ----------------------------------------------------------------------------------------------

    def _service_dashboard(
        self,
        http_api: apigwv2.HttpApi,
        functions: dict[str, lambda_.Function],
        queues: dict[str, sqs.IQueue],
    ) -> cloudwatch.Dashboard:
        """Is the service answering, how fast, and what is failing."""
        sum_ = cloudwatch.Stats.SUM
        per_function = functions.values()
        dead_letter = {name: queue for name, queue in queues.items() if name.endswith("-dlq")}
        return cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=physical_name(self._stage.name, "overview"),
            widgets=[
                [
                    _graph("API requests", [http_api.metric_count(period=PERIOD, statistic=sum_)]),
                    _graph(
                        "API latency (ms)",
                        [
                            http_api.metric_latency(period=PERIOD, statistic=cloudwatch.Stats.percentile(p))
                            for p in (50, 95, 99)
                        ],
                    ),
                    _graph(
                        "API errors",
                        [
                            http_api.metric_server_error(period=PERIOD, statistic=sum_),
                            http_api.metric_client_error(period=PERIOD, statistic=sum_),
                        ],
                    ),
                ],
                [
                    _graph("Requests by route (both doors)", [self._search(REQUEST_LATENCY, "route", "SampleCount")]),
                    _graph("Latency p95 by route (ms)", [self._search(REQUEST_LATENCY, "route", "p95")]),
                    _graph("5xx by route", [self._search(REQUEST_ERRORS, "route")]),
                ],
                [
                    _graph("Function errors", [f.metric_errors(period=PERIOD, statistic=sum_) for f in per_function]),
                    _graph(
                        "Function duration p95 (ms)",
                        [
                            f.metric_duration(period=PERIOD, statistic=cloudwatch.Stats.percentile(95))
                            for f in per_function
                        ],
                    ),
                    _graph(
                        "Function throttles", [f.metric_throttles(period=PERIOD, statistic=sum_) for f in per_function]
                    ),
                ],
                [
                    _graph("LLM calls by model", [self._search(LLM_CALLS, "model")]),
                    _graph(
                        "LLM failures, fallbacks, breakers opened, degraded answers",
                        [
                            self._every_service(name)
                            for name in (LLM_CALL_FAILURES, LLM_FALLBACKS, LLM_BREAKER_OPENED, LLM_DEGRADED)
                        ],
                    ),
                    _graph(
                        "Chats, RAG queries, cache hits, embedding failures",
                        [
                            self._every_service(name)
                            for name in (CHAT_REQUESTS, RAG_QUERIES, RESPONSE_CACHE_HITS, EMBEDDING_FAILURES)
                        ],
                    ),
                ],
                [
                    _graph("Queue depth (visible messages)", _queue_metrics(queues, "depth")),
                    _graph("Dead-letter queue depth", _queue_metrics(dead_letter, "depth")),
                    _graph("Oldest message age (s)", _queue_metrics(queues, "age")),
                ],
                [
                    _graph(
                        "Documents ingested, failed; chunks ingested",
                        [self._every_service(name) for name in (DOCUMENTS_INGESTED, DOCUMENTS_FAILED, CHUNKS_INGESTED)],
                    ),
                    _graph(
                        "Rate-limited, budget-refused, escalations",
                        [self._every_service(name) for name in (RATE_LIMITED, BUDGET_REFUSED, ESCALATIONS)],
                    ),
                    cloudwatch.AlarmStatusWidget(
                        title="Alarms", alarms=[*self.alarms, *([self.pager] if self.pager else [])], width=8, height=6
                    ),
                ],
            ],
        )

    def _tokens_dashboard(self) -> cloudwatch.Dashboard:
        """What is used and what is billed: tokens, usage events, invoices, payments."""
        return cloudwatch.Dashboard(
            self,
            "TokensDashboard",
            dashboard_name=physical_name(self._stage.name, "tokens-and-billing"),
            widgets=[
                [
                    _graph("Tokens by model and kind", [self._search(TOKENS_METERED, "kind,model")], width=12),
                    _graph(
                        "Embedding tokens (documents; questions)",
                        [
                            self._every_service(EMBEDDING_TOKENS),
                            self._search(TOKENS_METERED, "kind,model", extra='kind="embedding"'),
                        ],
                        width=12,
                    ),
                ],
                [
                    _graph(name, [self._every_service(name)], width=6)
                    for name in (USAGE_EVENTS_METERED, USAGE_EVENTS_DUPLICATE, USAGE_EVENTS_LATE, USAGE_EVENTS_PARKED)
                ],
                [
                    _graph(name, [self._every_service(name)], width=6)
                    for name in (TOKENS_METERED, INVOICES_CREATED, INVOICED_TOKENS, INVOICED_TOMANS)
                ],
                [
                    _graph(name, [self._every_service(name)], width=6)
                    for name in (
                        BILLING_RUN_FAILED,
                        PAYMENTS_REJECTED,
                        RECONCILIATION_MISMATCHES,
                        WEBHOOK_DELIVERY_FAILURES,
                    )
                ],
            ],
        )

    def _every_service(self, metric_name: str) -> cloudwatch.MathExpression:
        """A custom metric summed per service, for whichever functions emit it (dashboards only: alarms
        cannot use SEARCH)."""
        return self._search(metric_name, "", label=metric_name)

    def _search(
        self, metric_name: str, dimensions: str, statistic: str = "Sum", extra: str = "", label: str | None = None
    ) -> cloudwatch.MathExpression:
        """SEARCH over the metric with exactly these dimensions besides service (dashboards only)."""
        schema = ",".join(filter(None, [metrics_namespace(self._stage.name), dimensions, "service"]))
        search = f'{{{schema}}} MetricName="{metric_name}"' + (f" {extra}" if extra else "")
        return cloudwatch.MathExpression(
            expression=f"SEARCH('{search}', '{statistic}', {int(PERIOD.to_seconds())})",
            using_metrics={},
            label=label,
            period=PERIOD,
        )


def _graph(title: str, metrics: list[cloudwatch.IMetric], width: int = 8) -> cloudwatch.GraphWidget:
    return cloudwatch.GraphWidget(title=title, left=metrics, width=width, height=6)


def _queue_metrics(queues: dict[str, sqs.IQueue], what: str) -> list[cloudwatch.IMetric]:
    minute, maximum = Duration.minutes(1), cloudwatch.Stats.MAXIMUM
    if what == "age":
        return [
            q.metric_approximate_age_of_oldest_message(period=minute, statistic=maximum, label=n)
            for n, q in queues.items()
        ]
    return [
        q.metric_approximate_number_of_messages_visible(period=minute, statistic=maximum, label=n)
        for n, q in queues.items()
    ]


def _construct_id(name: str) -> str:
    """'chat-errors' -> 'ChatErrorsAlarm'."""
    return "".join(part.capitalize() for part in name.split("-")) + "Alarm"


def _suffixed(queues: dict[str, sqs.IQueue], suffix: str) -> dict[str, sqs.IQueue]:
    return {f"{name}-{suffix}": queue for name, queue in queues.items()}
