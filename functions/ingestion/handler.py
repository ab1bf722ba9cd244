"""Ingestion function: S3 object-created notifications, delivered through SQS, in partial batches."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.observability import logger, metrics, tracer
from shared.resources import INGESTION_QUEUE

processor = BatchProcessor(event_type=EventType.SQS)
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


def object_keys(body: str) -> list[str]:
    """The object keys an S3 notification names; none for S3's test event."""
    notification = json.loads(body)
    return [unquote_plus(r["s3"]["object"]["key"]) for r in notification.get("Records", []) if "s3" in r]


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    documents = services.get().document_service
    for key in object_keys(record.body):
        try:
            outcome = documents.ingest(key)
        except Exception as error:
            # On its last delivery the message goes to the DLQ next: its document must not stay "processing".
            if int(record.attributes.approximate_receive_count) >= INGESTION_QUEUE.max_receive_count:
                documents.fail_source(key, f"processing failed {INGESTION_QUEUE.max_receive_count} times: {error}")
            raise
        logger.info("ingested", extra={"key": key, "outcome": outcome.value})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
