"""Metering function: usage events from SQS into counters, reporting partial batch failures.

Each record is parsed and checked on its own (a poison record fails alone); the valid ones are then
written in one transaction per tenant, day and model, and a group whose write fails reports its records.
"""

from __future__ import annotations

import sys
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.metering import parse_event
from shared.models import UsageEvent
from shared.observability import logger, metrics, tracer

services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


class GroupedUsageProcessor(BatchProcessor):
    """A BatchProcessor whose record handler only parses; the writes happen per group after it."""

    def __init__(self) -> None:
        super().__init__(event_type=EventType.SQS)
        self.parsed: dict[str, tuple[SQSRecord, UsageEvent]] = {}

    def _prepare(self) -> None:
        super()._prepare()
        self.parsed = {}

    def process(self) -> list[tuple[Any, ...]]:
        results = super().process()
        metering = services.get().metering
        by_event = {id(event): record for record, event in self.parsed.values()}
        for key, events in metering.groups([event for _, event in self.parsed.values()]).items():
            try:
                metering.meter_group(key, events)
            except Exception:
                logger.exception(
                    "metering a group failed; its records will be delivered again", extra={"group": str(key)}
                )
                for event in events:
                    record = by_event[id(event)]
                    self.success_messages.remove(record)
                    results.append(self.failure_handler(record, sys.exc_info()))
        return results


processor = GroupedUsageProcessor()


@tracer.capture_method
def record_handler(record: SQSRecord) -> None:
    """Parse and check one record; raising sends it (alone) back to the queue and, in the end, to the DLQ."""
    try:
        event = parse_event(record.body)
        services.get().metering.validate(event)
    except Exception as error:
        logger.warning("refused a usage event", extra={"message_id": record.message_id, "reason": str(error)})
        raise
    processor.parsed[record.message_id] = (record, event)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
