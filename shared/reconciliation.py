"""Reconciliation: for every tenant and day, invoiced tokens must equal the unique metered events.

Three records are compared. The claims (one per counted event) are the ledger. The invoices must hold
exactly those tokens: the day's own lines plus late lines on later invoices, with late usage not yet
invoiced shown as carried forward. The counters must agree with the claims too.
"""

from __future__ import annotations

from datetime import date

from shared.data.billing import BillingRepository
from shared.data.tenants import TenantRepository
from shared.data.usage import UsageRepository
from shared.models import Record
from shared.observability import RECONCILIATION_MISMATCHES, count, logger


class TenantReconciliation(Record):
    tenant_id: str
    status: str  # "ok", "mismatch", or "open" (the day is not billed yet)
    metered_events: int
    metered_tokens: int  # from the claims: every unique counted event
    counted_tokens: int  # from the counters, late usage included
    invoiced_tokens: int  # on invoices: the day's lines and late lines on later invoices
    carried_tokens: int  # late usage of the day, metered but not invoiced yet


class ReconciliationReport(Record):
    period: date
    tenants: tuple[TenantReconciliation, ...]
    mismatches: int

    @property
    def ok(self) -> bool:
        return self.mismatches == 0


class Reconciler:
    def __init__(self, usage: UsageRepository, billing: BillingRepository, tenants: TenantRepository) -> None:
        self._usage = usage
        self._billing = billing
        self._tenants = tenants

    def reconcile(self, period: date) -> ReconciliationReport:
        results = [r for t in self._tenants.list_tenants() if (r := self._tenant(t.tenant_id, period)) is not None]
        mismatches = sum(r.status == "mismatch" for r in results)
        count(RECONCILIATION_MISMATCHES, mismatches)
        for result in results:
            if result.status == "mismatch":
                logger.error("reconciliation mismatch", extra=result.model_dump(mode="json") | {"period": str(period)})
        return ReconciliationReport(period=period, tenants=tuple(results), mismatches=mismatches)

    def _tenant(self, tenant_id: str, period: date) -> TenantReconciliation | None:
        claims = self._usage.claims_for_day(tenant_id, period)
        metered = sum(c.get("input_tokens", 0) + c.get("output_tokens", 0) for c in claims)
        late = [entry for entry in self._usage.late_usage(tenant_id) if entry.event_day == period]
        on_time = self._usage.counters_for_day(tenant_id, period)
        counted = sum(c.total_tokens for c in on_time) + sum(entry.total_tokens for entry in late)
        invoices = self._billing.list_invoices(tenant_id)
        invoiced = sum(line.tokens for i in invoices for line in i.lines if line.usage_day == period)
        invoiced_days = {i.period for i in invoices}
        carried = sum(entry.total_tokens for entry in late if entry.invoice_day not in invoiced_days)
        if not claims and not invoiced and not counted:
            return None  # no activity that day
        if not self._usage.is_closed(tenant_id, period):
            status = "open"
        elif metered == counted == invoiced + carried:
            status = "ok"
        else:
            status = "mismatch"
        return TenantReconciliation(
            tenant_id=tenant_id,
            status=status,
            metered_events=len(claims),
            metered_tokens=metered,
            counted_tokens=counted,
            invoiced_tokens=invoiced,
            carried_tokens=carried,
        )
