"""Metering: fold usage events into per-tenant, per-day, per-model counters, each event once."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from shared.data.usage import UsageRepository
from shared.errors import InvalidInput
from shared.models import UsageEvent
from shared.observability import TOKENS_METERED, USAGE_EVENTS_DUPLICATE, USAGE_EVENTS_METERED, metrics

# A claim must outlive every redelivery of its event (SQS keeps a message at most 14 days).
CLAIM_RETENTION = timedelta(days=35)


def billing_day(moment: datetime, timezone: str) -> date:
    """The day a moment belongs to on the tenant's bill: the calendar day in the billing time zone."""
    return moment.astimezone(ZoneInfo(timezone)).date()


def parse_event(body: str) -> UsageEvent:
    try:
        return UsageEvent.model_validate_json(body)
    except ValidationError as error:
        raise InvalidInput(
            f"malformed usage event: {error.error_count()} problem(s): {error.errors()[0]['msg']}"
        ) from error


class MeteringService:
    def __init__(self, usage: UsageRepository, timezone: str) -> None:
        self._usage = usage
        self._timezone = timezone

    def meter(self, event: UsageEvent) -> bool:
        """Count the event; False when it had been counted already (a duplicate delivery)."""
        counted = self._usage.record(
            event, billing_day(event.occurred_at, self._timezone), event.occurred_at + CLAIM_RETENTION
        )
        if counted:
            metrics.add_metric(name=USAGE_EVENTS_METERED, unit="Count", value=1)
            metrics.add_metric(name=TOKENS_METERED, unit="Count", value=event.total_tokens)
        else:
            metrics.add_metric(name=USAGE_EVENTS_DUPLICATE, unit="Count", value=1)
        return counted
