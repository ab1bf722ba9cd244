"""Queue pollers and the billing schedule: the parts of Lambda's event plumbing the local runtime plays."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from local.lambda_runtime import LocalLambdaContext, sqs_event
from shared.observability import logger

Handler = Callable[[dict[str, Any], Any], Any]
# Locally a failed message comes back after this many seconds instead of the deployed visibility timeout.
LOCAL_RETRY_SECONDS = 5


class QueuePoller(threading.Thread):
    """Long-polls a queue and calls a handler with real SQS event shapes, honouring batchItemFailures."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        handler: Handler,
        function_name: str,
        batch_size: int,
        retry_seconds: int = LOCAL_RETRY_SECONDS,
        timeout_seconds: int = 30,
        number: int = 0,
    ) -> None:
        super().__init__(name=f"poll-{function_name}-{number}", daemon=True)
        self._retry_seconds = retry_seconds
        self._timeout_seconds = timeout_seconds  # the deployed function's: ingestion plans its work by it
        self._sqs = sqs
        self._queue_url = queue_url
        self._handler = handler
        self._function_name = function_name
        self._batch_size = min(batch_size, 10)  # ReceiveMessage returns at most 10
        self._stopping = threading.Event()
        self._running: LocalLambdaContext | None = None  # the invocation in progress, if any
        self._arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    def stop(self) -> None:
        """Receive nothing more, and tell the invocation in progress that its time is up."""
        self._stopping.set()
        running = self._running
        if running is not None:
            running.cut_short()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.poll_once(wait_seconds=1)
            except Exception:
                logger.exception("poller failed; retrying", extra={"function": self._function_name})
                self._stopping.wait(1)

    def poll_once(self, wait_seconds: int = 0) -> int:
        """One receive-invoke-delete round; returns how many messages were handled successfully."""
        messages = self._sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return 0
        context = LocalLambdaContext(self._function_name, timeout_seconds=self._timeout_seconds)
        if self._stopping.is_set():
            context.cut_short()
        self._running = context
        try:
            response = self._handler(sqs_event(messages, self._arn), context) or {}
            failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        except Exception:
            logger.exception("handler raised: the whole batch will be retried", extra={"function": self._function_name})
            failed = {m["MessageId"] for m in messages}
        finally:
            self._running = None
        done = [m for m in messages if m["MessageId"] not in failed]
        retry = [m for m in messages if m["MessageId"] in failed]
        # One request each for what succeeded and what comes again, as an event source mapping does.
        if done:
            self._sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]} for n, m in enumerate(done)],
            )
        if retry:
            self._sqs.change_message_visibility_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self._retry_seconds}
                    for n, m in enumerate(retry)
                ],
            )
        return len(messages) - len(failed)


def next_run(now: datetime, hour: int, minute: int, timezone: str) -> datetime:
    """The next moment the nightly schedule fires: hour:minute in the billing time zone."""
    local_now = now.astimezone(ZoneInfo(timezone))
    candidate = local_now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= local_now:
        candidate += timedelta(days=1)
    return candidate


def nightly(hour: int, minute: int, timezone: str) -> Callable[[datetime], datetime]:
    return lambda now: next_run(now, hour, minute, timezone)


def every(interval: timedelta) -> Callable[[datetime], datetime]:
    return lambda now: now + interval


class RecurringSchedule(threading.Thread):
    """Emulates an EventBridge Scheduler schedule: calls a function with the schedule's input each time."""

    def __init__(
        self,
        name: str,
        handler: Handler,
        payload: dict[str, Any],
        next_fire: Callable[[datetime], datetime],
        clock: Callable[[], datetime],
        function_name: str,
    ) -> None:
        super().__init__(name=f"schedule-{name}", daemon=True)
        self._handler = handler
        self._payload = payload
        self._next = next_fire
        self._clock = clock
        self._function_name = function_name
        self._stopping = threading.Event()
        self.next_fire = next_fire(clock())

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            if self._clock() >= self.next_fire:
                self.fire()
                self.next_fire = self._next(self._clock())
            self._stopping.wait(min(30.0, max(0.5, (self.next_fire - self._clock()).total_seconds())))

    def fire(self) -> Any:
        logger.info("schedule fired", extra={"schedule": self.name, "payload": self._payload})
        try:
            return self._handler(dict(self._payload), LocalLambdaContext(self._function_name, timeout_seconds=300))
        except Exception:
            logger.exception("a scheduled invocation failed (the deployed scheduler would retry)")
            return None
