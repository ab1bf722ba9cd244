"""The one place the Powertools Logger, Tracer and Metrics are built.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE,
which CDK sets per function and stage; locally they default to "docuchat" and "DocuChat/local".
"""

from __future__ import annotations

import logging
import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DocuChat/local")

# A function run that emitted no metric (say, an S3 test event skipped) is normal, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "docuchat"))
tracer = Tracer()
metrics = Metrics()

# Keys every log line of the current request carries (tenant_id, key_id). A per-request dict, not the logger's
# own keys: those are process-wide, and on the local runtime's threads one request's tenant would be written
# into another's lines. The dict is set when the request starts; the threads FastAPI runs the request's parts
# on copy the context, so they all see, and add to, the same dict.
_request_keys: ContextVar[dict[str, Any] | None] = ContextVar("docuchat_request_keys", default=None)


class _RequestKeysFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in (_request_keys.get() or {}).items():
            setattr(record, name, value)  # Powertools writes a record's extra attributes into the JSON line
        return True


logger.addFilter(_RequestKeysFilter())


def begin_request() -> None:
    """A new request: the keys of whatever ran before in this context are gone."""
    _request_keys.set({})


def tag_request(**keys: Any) -> None:
    """Add keys to every later log line of this request (of this invocation, outside a request)."""
    current = _request_keys.get()
    if current is None:
        _request_keys.set(dict(keys))
    else:
        current.update(keys)


_metrics_lock = threading.Lock()

# Dimension names a metric must never carry: each of their values would be a custom metric of its own (billed per
# month), and who did what belongs in DynamoDB and the logs, not in CloudWatch metrics.
FORBIDDEN_DIMENSIONS = frozenset({"tenant", "tenant_id", "key", "key_id", "user", "user_id", "sub", "subject"})


def count(name: str, value: float = 1, unit: str = "Count", **dimensions: str) -> None:
    """Add to a custom metric of this invocation. With dimensions (say, model=...) it is also written at once with
    them, so both the total (which alarms watch) and the breakdown exist.

    Locked: Powertools' metric set is a plain dict, and metering meters groups on a thread pool (and the local
    runtime serves requests on many threads). With POWERTOOLS_METRICS_DISABLED (the local runtime) it records
    nothing: nothing would ever flush it, and Powertools prints a full set even when disabled.
    Dimensions name bounded things (a model, a kind, a route group), never a tenant: per-tenant figures live in
    DynamoDB.
    """
    forbidden = FORBIDDEN_DIMENSIONS.intersection(dimensions)
    if forbidden:
        raise ValueError(
            f"metric {name} may not have the dimensions {sorted(forbidden)}: per-tenant figures live in DynamoDB"
        )
    if os.environ.get("POWERTOOLS_METRICS_DISABLED", "").lower() == "true":
        return
    with _metrics_lock:
        metrics.add_metric(name=name, unit=unit, value=value)
        if not dimensions:
            return
        with single_metric(name=name, unit=MetricUnit(unit), value=value, namespace=metrics.namespace) as metric:
            for dimension, dimension_value in dimensions.items():
                metric.add_dimension(name=dimension, value=dimension_value)


def correlation_id() -> str:
    """The id this invocation's log lines carry as correlation_id (the API request's id), or "" when none is set."""
    return str(logger.get_correlation_id() or "")


@contextmanager
def log_keys(**keys: Any) -> Iterator[None]:
    """Add keys to the log lines written inside the block (one SQS record's, say), then put back what was there."""
    saved = _request_keys.get()
    _request_keys.set({**(saved or {}), **keys})
    try:
        yield
    finally:
        _request_keys.set(saved)


# Custom metric names, emitted with the dimension service=<function id> (and, where noted, a second time with
# the dimensions named). CloudWatch alarms and dashboards in stacks/monitoring.py watch these.
# The HTTP doors (chat and stream functions), by route group (the path's first part after /v1: chat, documents, ...).
REQUESTS = "Requests"  # by route
REQUEST_LATENCY = "RequestLatency"  # milliseconds, by route
REQUEST_ERRORS = "RequestErrors"  # 5xx answers, by route
CHAT_REQUESTS = "ChatRequests"
RAG_QUERIES = "RAGQueries"  # questions searched in the tenant's documents
# Models.
LLM_CALLS = "LLMCalls"  # by model
LLM_CALL_FAILURES = "LLMCallFailures"  # by model, once per model that failed a request
LLM_BREAKER_OPENED = "LLMBreakerOpened"  # by model
LLM_FALLBACKS = "LLMFallbacks"  # by the model fallen back from
LLM_DEGRADED = "LLMDegraded"  # every model failed: the extractive responder answered
RESPONSE_CACHE_HITS = "ResponseCacheHits"
EMBEDDING_FAILURES = "EmbeddingFailures"
RETRIEVAL_NOTHING_RELEVANT = "RetrievalNothingRelevant"
RETRIEVAL_MODEL_SAID_UNANSWERED = "RetrievalModelSaidUnanswered"  # passages found, none answered (the model's verdict)
STREAMS_ABANDONED = "StreamsAbandoned"  # the client went away; the model was read to its end and metered
# Spend and access control.
RATE_LIMITED = "RequestsRateLimited"
BUDGET_REFUSED = "RequestsBudgetRefused"
ESCALATIONS = "Escalations"
WEBHOOK_DELIVERIES = "WebhookDeliveries"
WEBHOOK_DELIVERY_FAILURES = "WebhookDeliveryFailures"
# Metering: tokens counted, by model (as billed: a cached answer's apart) and kind (input, output, embedding).
TOKENS_METERED = "TokensMetered"  # by model and kind
USAGE_EVENTS_METERED = "UsageEventsMetered"
USAGE_EVENTS_DUPLICATE = "UsageEventsDuplicate"
USAGE_EVENTS_LATE = "UsageEventsLate"
USAGE_EVENTS_PARKED = "UsageEventsParked"
# Ingestion.
DOCUMENTS_INGESTED = "DocumentsIngested"
DOCUMENTS_FAILED = "DocumentsFailed"
CHUNKS_INGESTED = "ChunksIngested"
EMBEDDING_TOKENS = "EmbeddingTokens"
# Billing.
INVOICES_CREATED = "InvoicesCreated"
INVOICED_TOKENS = "InvoicedTokens"  # tokens on the invoices a run created
INVOICED_TOMANS = "InvoicedTomans"  # their amount
BILLING_RUN_FAILED = "BillingRunFailed"
PAYMENTS_REJECTED = "PaymentsRejected"
RECONCILIATION_MISMATCHES = "ReconciliationMismatches"
