"""Billing function: the nightly schedule closes yesterday; the admin API closes a given date."""

from __future__ import annotations

from datetime import date
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.billing import previous_day
from shared.container import Container, FunctionServices
from shared.errors import InvalidInput
from shared.models import BillingRunStatus
from shared.observability import logger, metrics, tracer

RECONCILE = "docuchat.reconcile"
# Who asked for a billing run: the nightly schedule (stacks/schedule.py) or the admin API (shared/container.py).
TRIGGERS = {"docuchat.schedule": "schedule", "docuchat.admin": "admin"}
services = FunctionServices()
configure = services.configure  # tests and the local runtime pass their own container


class BillingRunFailedError(Exception):
    """Raised for a scheduled run that failed, so the scheduler retries it (re-runs are safe)."""


def period_of(event: dict[str, Any], container: Container) -> date:
    if event.get("date"):
        try:
            return date.fromisoformat(str(event["date"]))
        except ValueError as error:
            raise InvalidInput(f"date must be YYYY-MM-DD, got {event['date']!r}") from error
    return previous_day(container.clock(), container.settings.billing_timezone)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    container = services.get()
    source = event.get("source")
    if source == RECONCILE:  # the nightly check after billing; its metric is alarmed
        return container.reconciler.reconcile(period_of(event, container)).model_dump(mode="json")
    if source not in TRIGGERS:
        raise InvalidInput(f"unknown event source {source!r}: expected one of {sorted([*TRIGGERS, RECONCILE])}")
    trigger = TRIGGERS[source]
    run = container.billing_service.close_day(period_of(event, container), trigger=trigger)
    if run.status == BillingRunStatus.FAILED and trigger == "schedule":
        raise BillingRunFailedError(f"billing {run.period} failed for {len(run.errors)} tenant(s): {run.errors[:3]}")
    return run.model_dump(mode="json")
