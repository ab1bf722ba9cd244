"""Ingestion function: S3 object-created notifications, and its own continuation messages, through SQS.

A message is either S3's notification of an upload (or S3's test event, which names no object), a
`continue` message this function sent itself to finish a large document in another invocation, or a
`vectors.compact` message asking it to compact a tenant's vector segments into packs. A schedule
also invokes it every 15 minutes to sweep the uploads whose file never arrived.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.container import FunctionServices
from shared.ingestion import COMPACT_MESSAGE, CONTINUE_MESSAGE, Continuation, Upload
from shared.observability import logger, metrics, tracer
from shared.resources import INGESTION_QUEUE

UPLOAD_SWEEP = "docuchat.upload-sweep"
processor = BatchProcessor(event_type=EventType.SQS)
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


def uploads(notification: dict[str, Any]) -> list[Upload]:
    """The uploads an S3 notification names; none for S3's test event."""
    found = []
    for record in notification.get("Records", []):
        if "s3" not in record:
            continue
        s3_object = record["s3"]["object"]
        version = "|".join(
            str(part) for part in (s3_object.get("eTag"), s3_object.get("sequencer"), record.get("eventTime"))
        )
        found.append(Upload(key=unquote_plus(s3_object["key"]), version=version))
    return found


@tracer.capture_method
def record_handler(record: SQSRecord, lambda_context: LambdaContext) -> None:
    ingestion = services.get().ingestion
    last_try = int(record.attributes.approximate_receive_count) >= INGESTION_QUEUE.max_receive_count

    def time_left() -> float:
        return lambda_context.get_remaining_time_in_millis() / 1000

    try:
        body = json.loads(record.body)
    except json.JSONDecodeError:
        logger.warning("skipping a message that is not JSON", extra={"message_id": record.message_id})
        return
    if _compaction(body, time_left):
        return
    if isinstance(body, dict) and body.get("docuchat") == CONTINUE_MESSAGE:
        _continue(record, body, time_left, last_try)
        return
    for upload in uploads(body if isinstance(body, dict) else {}):
        try:
            outcome = ingestion.ingest(upload, time_left)
        except Exception as error:
            if last_try:
                ingestion.fail_upload(upload, _reason(error))
            raise
        logger.info("ingested", extra={"key": upload.key, "outcome": outcome.value})


def _continue(record: SQSRecord, body: dict[str, Any], time_left: Callable[[], float], last_try: bool) -> None:
    ingestion = services.get().ingestion
    try:
        continuation = Continuation.from_message(body)
    except (KeyError, TypeError):
        logger.warning("skipping a malformed continuation message", extra={"message_id": record.message_id})
        return
    try:
        outcome = ingestion.resume(continuation, time_left)
    except Exception as error:
        # On its last delivery the message goes to the DLQ next: its document must not stay "processing".
        if last_try:
            ingestion.fail_continuation(continuation, _reason(error))
        raise
    logger.info("continued", extra={"document_id": continuation.document_id, "outcome": outcome.value})


def _compaction(body: Any, time_left: Callable[[], float]) -> bool:
    """Compact the tenant a `vectors.compact` message names; False when the message is something else."""
    if not (
        isinstance(body, dict) and body.get("docuchat") == COMPACT_MESSAGE and isinstance(body.get("tenant_id"), str)
    ):
        return False
    result = services.get().ingestion.compact(body["tenant_id"], time_left)
    logger.info("compaction", extra={"tenant_id": result.tenant_id, "skipped": result.skipped})
    return True


def _reason(error: Exception) -> str:
    return f"processing failed {INGESTION_QUEUE.max_receive_count} times: {error}"


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse | dict[str, int]:
    if event.get("source") == UPLOAD_SWEEP:  # the schedule
        return services.get().ingestion.sweep_uploads()
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
