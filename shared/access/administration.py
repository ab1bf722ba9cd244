"""What the admin API does to tenants and their keys, each action recorded in the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shared.access.audit import AuditTrail
from shared.access.authenticator import RecentlyRead, key_entry, tenant_entry
from shared.access.keys import issue_key
from shared.data.outbound import OutboundPolicy, UnsafeUrl
from shared.data.tenants import TenantRepository
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import ApiKey, JwtSettings, Tenant

MAX_GRACE = timedelta(days=30)


class TenantAdministration:
    def __init__(
        self,
        tenants: TenantRepository,
        audit: AuditTrail,
        outbound: OutboundPolicy,
        clock: Callable[[], datetime],
        recent: RecentlyRead | None = None,
    ) -> None:
        self._recent = recent if recent is not None else RecentlyRead(0)  # what this process's requests trust
        self._tenants = tenants
        self._audit = audit
        self._outbound = outbound
        self._clock = clock

    def tenant(self, tenant_id: str) -> Tenant:
        tenant = self._tenants.get(tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {tenant_id} not found")
        return tenant

    def create(self, actor: str, name: str, email: str) -> Tenant:
        tenant = Tenant(tenant_id=new_id("t"), name=name.strip(), email=email, created_at=self._clock())
        self._tenants.create(tenant)
        self._audit.record(actor, "tenant.created", tenant.tenant_id, tenant.tenant_id, name=tenant.name, email=email)
        return tenant

    def update(self, actor: str, tenant_id: str, changes: dict[str, Any], limits: dict[str, Any] | None) -> Tenant:
        """`changes`: the fields given (name, email, status, prices, jwt); `limits`: the limits given, a None
        value meaning unlimited, merged into the tenant's own."""
        current = self.tenant(tenant_id)
        updates = dict(changes)
        if limits is not None:
            updates["limits"] = {**(current.limits or {}), **limits}
        if changes.get("jwt") is not None:
            updates["jwt"] = self._trusted_issuer(current, JwtSettings.model_validate(changes["jwt"]))
        elif "jwt" in changes and current.jwt is not None:  # null: no longer trust the tenant's issuer
            self._tenants.release_issuer(current.jwt.issuer, tenant_id)
        tenant = Tenant.model_validate({**current.model_dump(), **updates})
        self._tenants.update(tenant)
        self._recent.forget(tenant_entry(tenant_id))
        details = {name: value for name, value in updates.items() if name != "jwt"}
        if "jwt" in updates:
            details["jwt"] = tenant.jwt.model_dump() if tenant.jwt else None
        self._audit.record(actor, "tenant.updated", tenant_id, tenant_id, **details)
        return tenant

    def _trusted_issuer(self, tenant: Tenant, settings: JwtSettings) -> JwtSettings:
        try:
            self._outbound.check_form(settings.jwks_url)
        except UnsafeUrl as error:
            raise InvalidInput(f"jwt.jwks_url is refused: {error}", param="jwt.jwks_url") from error
        self._tenants.claim_issuer(settings.issuer, tenant.tenant_id)  # Conflict if another tenant has it
        if tenant.jwt is not None and tenant.jwt.issuer != settings.issuer:
            self._tenants.release_issuer(tenant.jwt.issuer, tenant.tenant_id)
        return settings

    def issue_key(
        self,
        actor: str,
        tenant_id: str,
        name: str,
        scopes: list[str] | None,
        expires_at: datetime | None,
        limits: dict[str, int] | None,
    ) -> tuple[str, ApiKey]:
        tenant = self.tenant(tenant_id)
        if expires_at is not None and expires_at <= self._clock():
            raise InvalidInput("expires_at must be in the future", param="expires_at")
        plaintext, record = issue_key(
            tenant.tenant_id,
            name,
            self._clock(),
            scopes=tuple(dict.fromkeys(scopes)) if scopes is not None else None,
            expires_at=expires_at,
            limits=limits or None,
        )
        self._tenants.put_key(record)
        self._audit.record(
            actor,
            "key.issued",
            record.key_id,
            tenant_id,
            name=name,
            scopes=list(record.scopes) if record.scopes is not None else "all",
            expires_at=expires_at.isoformat() if expires_at else None,
            limits=limits,
        )
        return plaintext, record

    def revoke_key(self, actor: str, tenant_id: str, key_id: str, grace_seconds: int) -> datetime:
        """Refuse the key now, or after `grace_seconds` (rotation: the old key keeps working meanwhile)."""
        self.tenant(tenant_id)
        grace = timedelta(seconds=grace_seconds)
        if grace > MAX_GRACE or grace_seconds < 0:
            raise InvalidInput(f"grace_seconds must be 0 to {int(MAX_GRACE.total_seconds())}", param="grace_seconds")
        at = self._clock() + grace
        self._tenants.revoke_key(tenant_id, key_id, at)
        self._recent.forget(key_entry(tenant_id, key_id))
        self._audit.record(actor, "key.revoked", key_id, tenant_id, effective_at=at.isoformat())
        return at
