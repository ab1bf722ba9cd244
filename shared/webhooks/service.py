"""The tenant's webhook, events on their way to it, and their delivery.

Emitting is cheap and never slows the caller: one SQS message (the event, and the email it should also send,
if any). The webhooks function delivers it:

- a tenant without a webhook, or not subscribed to the type, gets none (an email still goes);
- the URL is checked before every attempt (shared/data/outbound.py): a private address is a refused
  delivery, logged, not retried;
- a 2xx is delivered; anything else (a 500, a timeout, a refused connection) is tried again after
  30 s, 2 min, 10 min, 30 min, 1, 2, 4, 8 and 12 h: over 27 hours in all, the first retry within a minute.
  A wait longer than SQS's 15-minute delay is made of several delays: the message comes back early, sees
  its time has not come, and goes back to wait the rest.

Every attempt is logged (GET /v1/webhook/deliveries): when, the status code or error, how long it took.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from shared.data.outbound import OutboundFailed, OutboundHttp, UnsafeUrl
from shared.data.webhooks import WebhookQueue, WebhookRepository
from shared.errors import InvalidInput
from shared.ids import new_id
from shared.models import WEBHOOK_EVENTS, DeliveryAttempt, WebhookConfig, WebhookDelivery
from shared.observability import WEBHOOK_DELIVERIES, WEBHOOK_DELIVERY_FAILURES, count, logger
from shared.webhooks.signing import SIGNATURE_HEADER, new_secret, signature

RETRY_AFTER = (30, 120, 600, 1800, 3600, 7200, 14400, 28800, 43200)  # seconds, before each retry
MAX_URL_CHARS = 2048


class MailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> str: ...


class TenantEmail(Protocol):
    def __call__(self, tenant_id: str) -> str | None: ...


@dataclass(frozen=True)
class Email:
    subject: str
    body: str


class WebhookEmitter:
    """Where chat, ingestion and billing hand their events (and their emails) over."""

    def __init__(self, queue: WebhookQueue, clock: Callable[[], datetime]) -> None:
        self._queue = queue
        self._clock = clock

    def emit(self, tenant_id: str, event_type: str, data: dict[str, Any], email: Email | None = None) -> str:
        """Queue an event (best effort: an SQS outage is logged, and must not fail a chat); returns its id."""
        try:
            return self.emit_or_raise(tenant_id, event_type, data, email)
        except Exception:
            logger.exception("could not queue a webhook event", extra={"tenant_id": tenant_id, "type": event_type})
            return ""

    def emit_or_raise(self, tenant_id: str, event_type: str, data: dict[str, Any], email: Email | None = None) -> str:
        """Queue an event, or raise: for callers that retry until it is queued (billing)."""
        event_id = new_id("w")
        event = {"id": event_id, "type": event_type, "created": int(self._clock().timestamp()), "data": data}
        message: dict[str, Any] = {"tenant_id": tenant_id, "event": event, "attempt": 0}
        if email is not None:
            message["email"] = {"subject": email.subject, "body": email.body}
        self._queue.send(message)
        return event_id


class WebhookSettings:
    """PUT /v1/webhook and friends: the tenant's URL, its events, its signing secret."""

    def __init__(self, repository: WebhookRepository, http: OutboundHttp, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._http = http
        self._clock = clock

    def configure(self, tenant_id: str, url: str, events: list[str]) -> WebhookConfig:
        """A new webhook (or a replaced one), with a new signing secret, shown to the caller this once."""
        if len(url) > MAX_URL_CHARS:
            raise InvalidInput(f"url is longer than {MAX_URL_CHARS} characters", param="url")
        try:
            self._http.policy.check_form(url)
        except UnsafeUrl as error:
            raise InvalidInput(f"url is refused: {error}", param="url") from error
        unknown = sorted(set(events) - set(WEBHOOK_EVENTS))
        if unknown or not events:
            raise InvalidInput(f"events must be some of {', '.join(WEBHOOK_EVENTS)}", param="events")
        config = WebhookConfig(
            tenant_id=tenant_id,
            url=url,
            events=tuple(dict.fromkeys(events)),
            secret=new_secret(),
            created_at=self._clock(),
        )
        self._repository.put(config)
        return config


class WebhookDeliverer:
    """The webhooks function's work: one queued event at a time."""

    def __init__(
        self,
        repository: WebhookRepository,
        queue: WebhookQueue,
        http: OutboundHttp,
        mailer: MailSender,
        tenant_email: TenantEmail,
        clock: Callable[[], datetime],
    ) -> None:
        self._repository = repository
        self._queue = queue
        self._http = http
        self._mailer = mailer
        self._tenant_email = tenant_email
        self._clock = clock

    def handle(self, message: dict[str, Any]) -> str:
        """Deliver (or wait, or give up on) one event; returns what happened, for the log."""
        now = self._clock()
        not_before = float(message.get("not_before", 0))
        if not_before > now.timestamp():
            self._queue.send(message, delay_seconds=int(not_before - now.timestamp()) + 1)
            return "waiting"
        tenant_id, event = str(message["tenant_id"]), message["event"]
        if message.get("email"):
            self._send_email(tenant_id, message)
        config = self._repository.get(tenant_id)
        if config is None or event["type"] not in config.events:
            return "not subscribed"
        delivery = self._repository.delivery(tenant_id, event["id"]) or WebhookDelivery(
            tenant_id=tenant_id,
            event_id=event["id"],
            type=event["type"],
            url=config.url,
            status="pending",
            created_at=now,
        )
        if delivery.status in ("delivered", "failed", "refused"):
            return delivery.status  # a redelivered message: its outcome is settled
        attempt, outcome = self._attempt(config, event, now)
        attempts = (*delivery.attempts, attempt)
        number = int(message.get("attempt", 0))
        if outcome == "retry" and number < len(RETRY_AFTER):
            due = now + timedelta(seconds=RETRY_AFTER[number])
            self._repository.record(
                delivery.model_copy(update={"attempts": attempts, "status": "retrying", "next_attempt_at": due}), now
            )
            again = {**message, "attempt": number + 1, "not_before": due.timestamp()}
            again.pop("email", None)  # sent already
            self._queue.send(again, delay_seconds=RETRY_AFTER[number])
            return "retrying"
        status = {"delivered": "delivered", "refused": "refused"}.get(outcome, "failed")
        count(WEBHOOK_DELIVERIES if status == "delivered" else WEBHOOK_DELIVERY_FAILURES, 1)
        self._repository.record(
            delivery.model_copy(update={"attempts": attempts, "status": status, "next_attempt_at": None}), now
        )
        return status

    def _attempt(self, config: WebhookConfig, event: dict[str, Any], now: datetime) -> tuple[DeliveryAttempt, str]:
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "DocuChat-Webhooks/1",
            "DocuChat-Webhook-Id": str(event["id"]),
            "DocuChat-Event": str(event["type"]),
            SIGNATURE_HEADER: signature(config.secret, int(now.timestamp()), body),
        }
        began = time.perf_counter()
        try:
            status_code = self._http.post(config.url, body, headers)
        except UnsafeUrl as error:
            return DeliveryAttempt(at=now, error=f"refused: {error}"), "refused"
        except OutboundFailed as error:
            elapsed = int((time.perf_counter() - began) * 1000)
            return DeliveryAttempt(at=now, error=str(error)[:300], duration_ms=elapsed), "retry"
        elapsed = int((time.perf_counter() - began) * 1000)
        attempt = DeliveryAttempt(at=now, status_code=status_code, duration_ms=elapsed)
        return attempt, "delivered" if 200 <= status_code < 300 else "retry"

    def _send_email(self, tenant_id: str, message: dict[str, Any]) -> None:
        address = self._tenant_email(tenant_id)
        if address:
            email = message["email"]
            self._mailer.send(address, str(email["subject"]), str(email["body"]))
