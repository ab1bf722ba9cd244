"""Monthly token budgets that cannot be overrun, whatever the concurrency.

Before a model is called its worst case is reserved: the prompt's tokens plus `max_tokens` (and the question's
embedding). After, the reservation is settled with what was really used, and the rest goes back. A streamed
answer settles when its stream ends, and the stream is always read to its end (shared/chat/streaming.py), even
when the client has gone. A request that crashed leaves its reservation behind; reservations expire, and an
expired one is given back the next time the budget looks full.

So the spend can pass the budget only by what one call used beyond its own reservation (the prompt estimate
being low), never by the sum of calls in flight. Document embedding counts too: ingestion reserves each batch,
and fails the document when the budget is spent.

At 80% of the budget the tenant is told, once a period: the webhook event `budget.threshold`, and an email.
The period is the calendar month in the billing time zone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from shared.data.limits import BudgetSpent, BudgetStore
from shared.errors import BudgetExhausted
from shared.ids import new_id
from shared.observability import BUDGET_REFUSED, count, logger

THRESHOLD = 0.8
RESERVATION_LIFETIME = timedelta(minutes=20)  # longer than any function's run (the stream function: 2 min)


class Notifier(Protocol):
    def budget_threshold(self, tenant_id: str, period: str, used: int, limit: int) -> None: ...


@dataclass(frozen=True)
class Reservation:
    tenant_id: str
    period: str
    reservation_id: str
    tokens: int
    limit: int


@dataclass(frozen=True)
class BudgetStatus:
    limit: int | None
    used: int
    reserved: int
    remaining: int | None
    period: str


def budget_period(moment: datetime, timezone: str) -> str:
    return moment.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


class BudgetService:
    def __init__(self, store: BudgetStore, notifier: Notifier, timezone: str, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._notifier = notifier
        self._timezone = timezone
        self._clock = clock

    def reserve(self, tenant_id: str, limit: int | None, tokens: int) -> Reservation | None:
        """Hold `tokens` of the month's budget; None when the tenant has none. Raises BudgetExhausted."""
        if limit is None:
            return None
        now = self._clock()
        period = budget_period(now, self._timezone)
        reservation = Reservation(tenant_id, period, new_id("r"), max(1, tokens), limit)
        expires = int((now + RESERVATION_LIFETIME).timestamp())
        for attempt in range(2):
            try:
                self._store.reserve(tenant_id, period, reservation.reservation_id, reservation.tokens, limit, expires)
                return reservation
            except BudgetSpent:
                if attempt == 0 and self._release_expired(tenant_id, period, now):
                    continue  # abandoned reservations were holding it: try once more
        count(BUDGET_REFUSED, 1)
        raise BudgetExhausted(f"the monthly token budget of {limit:,} tokens is spent for {period}")

    def settle(self, reservation: Reservation | None, actual: int) -> None:
        """What a reserved call really used. Never raises: the answer has been given by now."""
        if reservation is None:
            return
        try:
            used = self._store.settle(
                reservation.tenant_id, reservation.period, reservation.reservation_id, reservation.tokens, actual
            )
            self._maybe_notify(reservation.tenant_id, reservation.period, used, reservation.limit)
        except Exception:  # the reservation expires and is given back; the usage itself is metered apart
            logger.exception("settling a budget reservation failed", extra={"tenant_id": reservation.tenant_id})

    def status(self, tenant_id: str, limit: int | None) -> BudgetStatus:
        period = budget_period(self._clock(), self._timezone)
        state = self._store.state(tenant_id, period)
        reserved = max(0, state.committed - state.used)
        remaining = None if limit is None else max(0, limit - state.committed)
        return BudgetStatus(limit=limit, used=state.used, reserved=reserved, remaining=remaining, period=period)

    def _release_expired(self, tenant_id: str, period: str, now: datetime) -> bool:
        state = self._store.state(tenant_id, period)
        released = False
        for reservation_id, (tokens, expires) in state.reservations.items():
            if expires <= now.timestamp() and self._store.release(tenant_id, period, reservation_id, tokens):
                logger.info("released an abandoned budget reservation", extra={"tenant_id": tenant_id})
                released = True
        return released

    def _maybe_notify(self, tenant_id: str, period: str, used: int, limit: int) -> None:
        if used >= THRESHOLD * limit and self._store.mark_threshold_notified(tenant_id, period):
            self._notifier.budget_threshold(tenant_id, period, used, limit)


class TenantBudgets:
    """Budgets by tenant id, for work done with no caller at hand (ingestion): the limit is looked up."""

    def __init__(self, service: BudgetService, limit_of: Callable[[str], int | None]) -> None:
        self._service = service
        self._limit_of = limit_of

    def reserve(self, tenant_id: str, tokens: int) -> Reservation | None:
        return self._service.reserve(tenant_id, self._limit_of(tenant_id), tokens)

    def settle(self, reservation: Reservation | None, actual: int) -> None:
        self._service.settle(reservation, actual)
