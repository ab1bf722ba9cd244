"""Webhooks function: deliver the tenants' webhook events (and the emails some carry) from their SQS queue.

A delivery that fails is not reported back to SQS: it is logged, and queued again for its next attempt (see
shared/webhooks/service.py), so one tenant's dead receiver never holds up another's. Only an unexpected error
(DynamoDB down, say) fails the record, which SQS then delivers again, and in the end puts in the DLQ.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    try:
        message = json.loads(record.body)
        assert isinstance(message, dict) and "tenant_id" in message and "event" in message
    except (json.JSONDecodeError, AssertionError):
        logger.warning("skipping a message that is not a webhook event", extra={"message_id": record.message_id})
        return
    outcome = services.get().webhook_deliverer.handle(message)
    logger.info("webhook event", extra={"event_id": message["event"].get("id"), "outcome": outcome})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
