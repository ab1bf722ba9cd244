"""Metering: fold usage events into per-tenant, per-day, per-model counters, each event exactly once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.data.usage import GroupResult, UsageRepository
from shared.errors import InvalidInput
from shared.models import UsageEvent, UsageKind
from shared.observability import (
    TOKENS_METERED,
    USAGE_EVENTS_DUPLICATE,
    USAGE_EVENTS_LATE,
    USAGE_EVENTS_METERED,
    USAGE_EVENTS_PARKED,
    correlation_id,
    count,
    logger,
)

# A claim outlives every redelivery of its event (SQS keeps a message 14 days) and the reconciliation window.
CLAIM_RETENTION = timedelta(days=100)

GroupKey = tuple[str, date, str]  # tenant, event day, billed model (a cached answer's apart: UsageEvent.billed_model)


class TenantLookup(Protocol):
    def get(self, tenant_id: str) -> object | None: ...


class KnownTenants:
    """Whether a tenant exists, remembering the ones seen: tenants are never deleted, only suspended."""

    def __init__(self, tenants: TenantLookup) -> None:
        self._tenants = tenants
        self._known: set[str] = set()

    def exists(self, tenant_id: str) -> bool:
        if tenant_id not in self._known and self._tenants.get(tenant_id) is not None:
            self._known.add(tenant_id)
        return tenant_id in self._known


def billing_day(moment: datetime, timezone: str) -> date:
    """The day a moment belongs to on the tenant's bill: the calendar day in the billing time zone."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def parse_event(body: str) -> UsageEvent:
    try:
        return UsageEvent.model_validate_json(body)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise InvalidInput(f"malformed usage event: {where}: {first['msg']}") from error


class UsageQueueSender(Protocol):
    def send_all(self, events: Sequence[UsageEvent]) -> list[UsageEvent]: ...


class UsageSink(Protocol):
    """Where chat and ingestion send the usage they cause (DurableUsageSink)."""

    def send(self, *events: UsageEvent) -> None: ...


class Outbox(Protocol):
    def park(self, event: UsageEvent, parked_at: datetime) -> None: ...

    def parked(self, tenant_id: str) -> list[UsageEvent]: ...

    def remove(self, event: UsageEvent) -> None: ...


class DurableUsageSink:
    """Sends usage events to SQS; when SQS stays unreachable after retries, parks them in the outbox.

    An event is never dropped: if the outbox fails too, the error reaches the caller, whose retry (same
    request id, same event id) is counted once.
    """

    def __init__(self, queue: UsageQueueSender, outbox: Outbox, clock: Callable[[], datetime]) -> None:
        self._queue = queue
        self._outbox = outbox
        self._clock = clock

    def send(self, *events: UsageEvent) -> None:
        """Send a request's events together (one SQS call); any SQS does not take are parked.

        Each carries the correlation id of the invocation that sends it, unless it has one already."""
        current = correlation_id()
        if current:
            events = tuple(e if e.correlation_id else e.model_copy(update={"correlation_id": current}) for e in events)
        try:
            refused = self._queue.send_all(events)
        except (BotoCoreError, ClientError) as error:
            logger.warning("SQS refused usage events; parking them in the outbox", extra={"error": str(error)})
            refused = list(events)
        if refused:
            count(USAGE_EVENTS_PARKED, len(refused))
            for event in refused:
                self._outbox.park(event, self._clock())


def _count_tokens(model: str, events: Sequence[UsageEvent]) -> None:
    """TokensMetered by model and kind: input and output of chat events, and embedding tokens on their own."""
    by_kind: dict[str, int] = defaultdict(int)
    for event in events:
        if event.kind == UsageKind.EMBEDDING:
            by_kind["embedding"] += event.total_tokens
        else:
            by_kind["input"] += event.input_tokens
            by_kind["output"] += event.output_tokens
    for kind, tokens in by_kind.items():
        if tokens:
            count(TOKENS_METERED, tokens, model=model, kind=kind)


class MeteringService:
    def __init__(
        self,
        usage: UsageRepository,
        outbox: Outbox,
        tenants: KnownTenants,
        timezone: str,
        clock: Callable[[], datetime],
        concurrency: int = 1,
    ) -> None:
        self.concurrency = concurrency  # group transactions of one batch in flight at once
        self._usage = usage
        self._outbox = outbox
        self._tenants = tenants
        self._timezone = timezone
        self._clock = clock

    def validate(self, event: UsageEvent) -> None:
        """Events of tenants that do not exist are refused (they end in the DLQ, never in a counter)."""
        if not self._tenants.exists(event.tenant_id):
            raise InvalidInput(f"usage event {event.event_id} names unknown tenant {event.tenant_id}")

    def groups(self, events: Sequence[UsageEvent]) -> dict[GroupKey, list[UsageEvent]]:
        grouped: dict[GroupKey, list[UsageEvent]] = defaultdict(list)
        for event in events:
            grouped[(event.tenant_id, billing_day(event.occurred_at, self._timezone), event.billed_model)].append(event)
        return dict(grouped)

    def meter_group(self, key: GroupKey, events: list[UsageEvent]) -> GroupResult:
        """Count one group in as few writes as possible; duplicates are recognised and skipped."""
        tenant_id, event_day, model = key
        now = self._clock()
        result = self._usage.record_group(
            tenant_id, event_day, model, events, billing_day(now, self._timezone), now + CLAIM_RETENTION
        )
        if result.counted:
            count(USAGE_EVENTS_METERED, len(result.counted))
            _count_tokens(model, result.counted)
        if result.duplicates:
            count(USAGE_EVENTS_DUPLICATE, len(result.duplicates))
        if result.late_invoice_day:
            count(USAGE_EVENTS_LATE, len(result.counted))
            logger.info(
                "late usage: its day was billed, it goes on a later invoice",
                extra={
                    "tenant_id": tenant_id,
                    "event_day": str(event_day),
                    "invoice_day": str(result.late_invoice_day),
                },
            )
        return result

    def drain_outbox(self, tenant_ids: Sequence[str]) -> int:
        """Count the events parked in the outbox, then remove them; returns how many were drained."""
        drained = 0
        for tenant_id in tenant_ids:
            parked = self._outbox.parked(tenant_id)
            for key, events in self.groups(parked).items():
                self.meter_group(key, events)
                for event in events:
                    self._outbox.remove(event)  # only once counted: a crash before this re-counts nothing
                drained += len(events)
        if drained:
            logger.info("drained the usage outbox", extra={"events": drained})
        return drained
