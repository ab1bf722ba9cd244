"""A presented credential (an API key, or a tenant's JWT) -> the Principal it is, with scopes and limits.

A key costs one consistent GetItem for itself and one for its tenant, and a warm function keeps both for
`credential_cache_seconds` (DOCUCHAT_CREDENTIAL_CACHE_SECONDS; 30 in the stages, 0 = read every time). So a
revoked key, or a suspended tenant, is refused by every function within that long (at once by the one that
revoked or suspended it, which forgets what it kept): the price of two fewer
DynamoDB calls on every request (docs/decisions/0017-warm-path.md). Expiry is checked on every request against
the clock. `last_used_at` is written at most every LAST_USED_EVERY, so keeping it costs about nothing.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable, Hashable
from datetime import datetime, timedelta
from typing import TypeVar

from shared.access.keys import KEY_PATTERN, hash_key
from shared.access.tokens import TokenVerifier, looks_like_jwt
from shared.data.tenants import TenantRepository
from shared.errors import Forbidden, Unauthorized
from shared.models import ALL_SCOPES, Limits, Principal, Tenant, TenantStatus

LAST_USED_EVERY = timedelta(minutes=5)
MISSING = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
RECENT_ENTRIES = 10_000  # keys and tenants a warm function remembers at most (a few MB)
T = TypeVar("T")


def key_entry(tenant_id: str, key_id: str) -> tuple[str, str, str]:
    return ("key", tenant_id, key_id)


def tenant_entry(tenant_id: str) -> tuple[str, str]:
    return ("tenant", tenant_id)


class RecentlyRead:
    """Values read in the last `seconds`, by key: what a warm function does not read again yet."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._values: dict[Hashable, tuple[float, object]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, read: Callable[[], T]) -> T:
        now = self._clock()
        with self._lock:
            found = self._values.get(key)
        if found is not None and now - found[0] < self._seconds:
            return found[1]  # type: ignore[return-value]
        value = read()
        self.put(key, value, now)
        return value

    def forget(self, key: Hashable) -> None:
        """The next `get` reads again (this process changed it: a revocation, a suspension)."""
        with self._lock:
            self._values.pop(key, None)

    def put(self, key: Hashable, value: object, at: float | None = None) -> None:
        if self._seconds <= 0:
            return
        with self._lock:
            if len(self._values) >= RECENT_ENTRIES:
                self._values.clear()
            self._values[key] = (self._clock() if at is None else at, value)


class Authenticator:
    def __init__(
        self,
        tenants: TenantRepository,
        admin_key: str | None,
        tokens: TokenVerifier,
        default_limits: Limits,
        clock: Callable[[], datetime],
        recent: RecentlyRead | None = None,
    ) -> None:
        self._recent = recent if recent is not None else RecentlyRead(0)
        self._tenants = tenants
        self._admin_key = admin_key
        self._tokens = tokens
        self._defaults = default_limits
        self._clock = clock

    def tenant(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized(MISSING)
        if looks_like_jwt(presented):
            return self._token(presented)
        return self._key(presented)

    def limits_of(self, tenant: Tenant) -> Limits:
        """The stage's defaults, with the tenant's own where it has set them."""
        return self._defaults.overridden(tenant.limits)

    def _key(self, presented: str) -> Principal:
        match = KEY_PATTERN.match(presented)
        if not match:
            raise Unauthorized("invalid API key")
        tenant_id, key_id, _secret = match.groups()
        record = self._recent.get(key_entry(tenant_id, key_id), lambda: self._tenants.get_key(tenant_id, key_id))
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(presented)):
            raise Unauthorized("invalid API key")
        now = self._clock()
        if record.revoked_at is not None and record.revoked_at <= now:
            raise Unauthorized("this API key was revoked")
        if record.expires_at is not None and record.expires_at <= now:
            raise Unauthorized("this API key has expired")
        tenant = self._active(tenant_id)
        if record.last_used_at is None or now - record.last_used_at >= LAST_USED_EVERY:
            self._tenants.touch_key(tenant_id, key_id, now, not_since=now - LAST_USED_EVERY)
            self._recent.put(key_entry(tenant_id, key_id), record.model_copy(update={"last_used_at": now}))
        return Principal(
            tenant_id=tenant_id,
            key_id=key_id,
            subject=key_id,
            scopes=frozenset(record.scopes) if record.scopes is not None else ALL_SCOPES,
            limits=self.limits_of(tenant).tightened(record.limits),
        )

    def _token(self, token: str) -> Principal:
        verified = self._tokens.verify(token)
        tenant = self._active(verified.tenant.tenant_id)
        return Principal(
            tenant_id=tenant.tenant_id,
            key_id="jwt",
            subject=f"jwt:{verified.subject}"[:200],
            scopes=verified.scopes & ALL_SCOPES,
            limits=self.limits_of(tenant),
        )

    def _active(self, tenant_id: str) -> Tenant:
        tenant = self._recent.get(tenant_entry(tenant_id), lambda: self._tenants.get(tenant_id))
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            raise Forbidden("this tenant is suspended")
        return tenant

    def admin(self, presented: str | None) -> None:
        if not self._admin_key:
            raise Forbidden("the admin API is disabled: no admin key is configured")
        if not presented or not hmac.compare_digest(presented.encode(), self._admin_key.encode()):
            raise Unauthorized("invalid admin key")


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this {'token' if principal.key_id == 'jwt' else 'key'} lacks the scope '{scope}'")
