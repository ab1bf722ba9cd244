"""Billing function: the nightly schedule closes yesterday; the admin API closes a given date."""

from __future__ import annotations

from datetime import date
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.billing import previous_day
from shared.container import Container, load_settings
from shared.errors import InvalidInput
from shared.models import BillingRunStatus
from shared.observability import logger, metrics, tracer

_container: Container | None = None


class BillingRunFailedError(Exception):
    """Raised for a scheduled run that failed, so the scheduler retries it (re-runs are safe)."""


def configure(container: Container) -> None:
    global _container
    _container = container


def _services() -> Container:
    if _container is None:
        configure(Container(load_settings()))
    assert _container is not None
    return _container


def period_of(event: dict[str, Any], services: Container) -> date:
    if event.get("date"):
        try:
            return date.fromisoformat(str(event["date"]))
        except ValueError as error:
            raise InvalidInput(f"date must be YYYY-MM-DD, got {event['date']!r}") from error
    return previous_day(services.clock(), services.settings.billing_timezone)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    services = _services()
    trigger = "admin" if event.get("source") == "docuchat.admin" else "schedule"
    run = services.billing_service.close_day(period_of(event, services), trigger=trigger)
    if run.status == BillingRunStatus.FAILED and trigger == "schedule":
        raise BillingRunFailedError(f"billing {run.period} failed for {len(run.errors)} tenant(s): {run.errors[:3]}")
    return run.model_dump(mode="json")
