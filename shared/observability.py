"""The one place the Powertools Logger, Tracer and Metrics are built.

Service name and metrics namespace come from POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE,
which CDK sets per function and stage; locally they default to "docuchat" and "DocuChat/local".
"""

from __future__ import annotations

import os
import warnings

from aws_lambda_powertools import Logger, Metrics, Tracer

os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "DocuChat/local")

# A function run that emitted no metric (say, an S3 test event skipped) is normal, not worth a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "docuchat"))
tracer = Tracer()
metrics = Metrics()

# Custom metric names; CloudWatch alarms in stacks/ watch these.
LLM_CALL_FAILURES = "LLMCallFailures"
LLM_FALLBACKS = "LLMFallbacks"
CHAT_REQUESTS = "ChatRequests"
TOKENS_METERED = "TokensMetered"
USAGE_EVENTS_METERED = "UsageEventsMetered"
USAGE_EVENTS_DUPLICATE = "UsageEventsDuplicate"
USAGE_EVENTS_LATE = "UsageEventsLate"
USAGE_EVENTS_PARKED = "UsageEventsParked"
DOCUMENTS_INGESTED = "DocumentsIngested"
DOCUMENTS_FAILED = "DocumentsFailed"
EMBEDDING_TOKENS = "EmbeddingTokens"
EMBEDDING_FAILURES = "EmbeddingFailures"
RETRIEVAL_NOTHING_RELEVANT = "RetrievalNothingRelevant"
INVOICES_CREATED = "InvoicesCreated"
BILLING_RUN_FAILED = "BillingRunFailed"
PAYMENTS_REJECTED = "PaymentsRejected"
RECONCILIATION_MISMATCHES = "ReconciliationMismatches"
