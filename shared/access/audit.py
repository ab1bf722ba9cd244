"""Every admin action, recorded: who (the admin key, from which address), what, on what, with what, when.

Tenants, keys, limits, JWT settings, webhooks set by the admin, and billing runs. Records are kept for the
stage's retention (DOCUCHAT_AUDIT_RETENTION_DAYS) and read with GET /v1/admin/audit, which a tenant key cannot.
Secrets (a new key, a signing secret) are never recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from shared.data.audit import AuditRepository
from shared.data.dynamo import Page
from shared.ids import new_id
from shared.models import AuditRecord


class AuditTrail:
    def __init__(self, repository: AuditRepository, retention_days: int, clock: Callable[[], datetime]) -> None:
        self._repository = repository
        self._retention = timedelta(days=retention_days)
        self._clock = clock

    def record(self, actor: str, action: str, target: str, tenant_id: str | None = None, **details: Any) -> AuditRecord:
        now = self._clock()
        entry = AuditRecord(
            record_id=new_id("a"),
            at=now,
            actor=actor,
            action=action,
            target=target,
            tenant_id=tenant_id,
            details=details,
        )
        self._repository.add(entry, now + self._retention)
        return entry

    def page(self, tenant_id: str | None, limit: int, cursor: str | None) -> Page[AuditRecord]:
        return self._repository.page(tenant_id, limit, cursor)
