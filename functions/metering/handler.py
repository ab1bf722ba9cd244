"""Metering function: usage events from SQS into counters, reporting partial batch failures."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.metering import parse_event
from shared.observability import logger, metrics, tracer

processor = BatchProcessor(event_type=EventType.SQS)
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    event = parse_event(record.body)
    counted = services.get().metering.meter(event)
    logger.debug("metered", extra={"event_id": event.event_id, "counted": counted})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
