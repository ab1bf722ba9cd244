"""Requests per minute and per hour, per key (or per token subject), correct across concurrent instances.

The limits are the stage's defaults, replaced where the tenant has its own (PATCH .../tenants/{id} {"limits"}),
and tightened where a key has its own. Each tenant-authenticated request costs one DynamoDB write
(shared/data/limits.py), and its reply says where the caller stands:

- X-RateLimit-Limit: the tightest window's limit (per minute when there is one);
- X-RateLimit-Remaining: requests left before a limit is reached, in whichever window has fewer;
- X-RateLimit-Reset: seconds until that window starts afresh.

Past a limit: 429, Retry-After, and nothing is counted. A caller with neither limit is not counted at all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.data.limits import Counts, RateCounters, RateLimitReached
from shared.errors import RateLimited
from shared.models import Principal
from shared.observability import RATE_LIMITED, count

COUNTER_LIFETIME = timedelta(hours=2)  # an hour's item outlives its hour, then TTL removes it


@dataclass(frozen=True)
class RateStatus:
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.reset_seconds),
        }


class RateLimiter:
    def __init__(self, counters: RateCounters, clock: Callable[[], datetime]) -> None:
        self._counters = counters
        self._clock = clock

    def check(self, principal: Principal) -> RateStatus | None:
        """Count the request; None when the caller is unlimited. Raises RateLimited past a limit."""
        per_minute = principal.limits.requests_per_minute
        per_hour = principal.limits.requests_per_hour
        if per_minute is None and per_hour is None:
            return None
        now = self._clock()
        try:
            counts = self._counters.hit(
                principal.tenant_id, principal.rate_subject, now, per_minute, per_hour, now + COUNTER_LIFETIME
            )
        except RateLimitReached as reached:
            status = _status(reached.counts, per_minute, per_hour, now, counted=False)
            count(RATE_LIMITED, 1)
            raise RateLimited(
                f"rate limit reached: try again in {status.reset_seconds} s",
                retry_after=status.reset_seconds,
                headers=status.headers(),
            ) from reached
        return _status(counts, per_minute, per_hour, now, counted=True)


def _status(counts: Counts, per_minute: int | None, per_hour: int | None, now: datetime, counted: bool) -> RateStatus:
    minute_reset = 60 - now.second
    hour_reset = 3600 - (now.minute * 60 + now.second)
    windows = []
    if per_minute is not None:
        windows.append((per_minute - counts.minute, minute_reset, per_minute, counts.minute >= per_minute))
    if per_hour is not None:
        windows.append((per_hour - counts.hour, hour_reset, per_hour, counts.hour >= per_hour))
    if not counted:  # refused: the window that is full says when to come back
        full = [w for w in windows if w[3]] or windows
        remaining, reset, _, _ = max(full, key=lambda w: w[1])
    else:
        remaining, reset, _, _ = min(windows, key=lambda w: w[0])
    return RateStatus(limit=windows[0][2], remaining=remaining, reset_seconds=max(1, reset))
