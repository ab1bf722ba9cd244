"""Metering function: usage events from SQS into counters, reporting partial batch failures.

Each record is parsed and checked on its own (a poison record fails alone); the valid ones are then
written in one transaction per tenant, day and model, and a group whose write fails reports its records.
The schedule also invokes it every five minutes to drain the outbox of events SQS could not take.
"""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.base import ExceptionInfo
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.metering import GroupKey, MeteringService, parse_event
from shared.models import UsageEvent
from shared.observability import log_keys, logger, metrics, tracer

OUTBOX_DRAIN = "docuchat.outbox-drain"
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


class GroupedUsageProcessor(BatchProcessor):
    """A BatchProcessor whose record handler (`parse`) only checks; the writes happen per group after it."""

    def __init__(self, metering: MeteringService) -> None:
        # A batch that fails whole is reported record by record too: the response always names what failed.
        super().__init__(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
        self._metering = metering
        self._parsed: list[tuple[SQSRecord, UsageEvent]] = []

    def parse(self, record: SQSRecord) -> None:
        """Raising sends this record (alone) back to the queue and, in the end, to the DLQ."""
        try:
            event = parse_event(record.body)
        except Exception as error:
            _refused(record, error)
            raise
        # The producer's ids on this record's lines: a chat's correlation id finds how its tokens were counted.
        with log_keys(correlation_id=event.correlation_id, tenant_id=event.tenant_id):
            try:
                self._metering.validate(event)
            except Exception as error:
                _refused(record, error)
                raise
            logger.info(
                "usage event received", extra={"event_id": event.event_id, "kind": event.kind, "model": event.model}
            )
        self._parsed.append((record, event))

    def process(self) -> list[tuple[Any, ...]]:
        results = super().process()
        record_of = {id(event): record for record, event in self._parsed}
        groups = list(self._metering.groups([event for _, event in self._parsed]).items())
        # Groups are independent (another tenant, day or model): their transactions go out side by side.
        with ThreadPoolExecutor(max_workers=max(1, min(self._metering.concurrency, len(groups)))) as pool:
            failures = list(pool.map(self._meter, groups))
        for (key, events), failure in zip(groups, failures, strict=True):
            if failure is None:
                continue
            logger.warning(
                "metering a group failed; its records come again", extra={"group": str(key), "error": repr(failure[1])}
            )
            for event in events:
                record = record_of[id(event)]
                # Powertools keeps successes as raw records, whatever its annotation says.
                self.success_messages.remove(record.raw_event)  # type: ignore[arg-type]
                results.append(self.failure_handler(record, failure))
        return results

    def _meter(self, group: tuple[GroupKey, list[UsageEvent]]) -> ExceptionInfo | None:
        try:
            self._metering.meter_group(*group)
        except Exception:
            return sys.exc_info()
        return None


def _refused(record: SQSRecord, error: Exception) -> None:
    logger.warning("refused a usage event", extra={"message_id": record.message_id, "reason": str(error)})


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    container = services.get()
    if event.get("source") == OUTBOX_DRAIN:  # the five-minute schedule
        return {"drained": container.metering.drain_outbox([t.tenant_id for t in container.tenants.list_tenants()])}
    processor = GroupedUsageProcessor(container.metering)
    return process_partial_response(event=event, record_handler=processor.parse, processor=processor, context=context)
