"""The admin API: tenants, their keys, and billing runs. Authenticated with the admin key."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Response

from functions.chat.deps import PageParams, Services, admin, known_id
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import (
    BillingRunRequest,
    BillingRunsOut,
    IsoDate,
    KeyCreate,
    KeyCreated,
    KeyOut,
    ReconciliationOut,
    TenantCreate,
    TenantList,
    TenantOut,
    TenantUpdate,
)
from shared.auth import issue_key
from shared.errors import NotFound
from shared.ids import new_id
from shared.models import Tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)], responses=TENANT_ERRORS)


def _tenant(services: Services, tenant_id: str) -> Tenant:
    tenant = services.tenants.get(known_id(tenant_id, "tenant"))
    if tenant is None:
        raise NotFound(f"tenant {tenant_id} not found")
    return tenant


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantCreate, services: Services) -> TenantOut:
    tenant = Tenant(tenant_id=new_id("t"), name=body.name.strip(), email=body.email, created_at=services.clock())
    services.tenants.create(tenant)
    return TenantOut(tenant=tenant)


@router.get("/tenants", response_model=TenantList)
def list_tenants(services: Services, page: PageParams) -> TenantList:
    """Oldest first, a page at a time: pass `next_cursor` back as `cursor` for the next page."""
    found = services.tenants.page_tenants(page.limit, page.cursor)
    return TenantList(tenants=found.items, next_cursor=found.next_cursor)


@router.patch("/tenants/{tenant_id}", response_model=TenantOut)
def update_tenant(tenant_id: str, body: TenantUpdate, services: Services) -> TenantOut:
    current = _tenant(services, tenant_id)
    tenant = Tenant.model_validate({**current.model_dump(), **body.model_dump(exclude_none=True)})
    services.tenants.update(tenant)
    return TenantOut(tenant=tenant)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated)
def create_key(tenant_id: str, body: KeyCreate, services: Services) -> KeyCreated:
    tenant = _tenant(services, tenant_id)
    plaintext, record = issue_key(tenant.tenant_id, body.name, services.clock())
    services.tenants.put_key(record)
    return KeyCreated(key_id=record.key_id, prefix=record.prefix, api_key=plaintext, created_at=record.created_at)


@router.get("/tenants/{tenant_id}/keys")
def list_keys(tenant_id: str, services: Services) -> dict[str, list[KeyOut]]:
    keys = services.tenants.list_keys(_tenant(services, tenant_id).tenant_id)
    return {"keys": [KeyOut(**k.model_dump(exclude={"key_hash", "tenant_id"})) for k in keys]}


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204)
def revoke_key(tenant_id: str, key_id: str, services: Services) -> Response:
    services.tenants.revoke_key(_tenant(services, tenant_id).tenant_id, known_id(key_id, "key"), services.clock())
    return Response(status_code=204)


@router.post("/billing/run")
def run_billing(body: BillingRunRequest, services: Services) -> dict[str, Any]:
    """Runs the nightly billing job for `date` now. Re-running a date creates nothing twice."""
    return services.run_billing(body.date)


@router.get("/reconciliation", response_model=ReconciliationOut)
def reconciliation(services: Services, date: IsoDate) -> ReconciliationOut:
    """For each tenant: the day's unique metered tokens against what its invoices hold."""
    report = services.reconciler.reconcile(date)
    return ReconciliationOut(
        period=report.period, ok=report.ok, mismatches=report.mismatches, tenants=list(report.tenants)
    )


@router.get("/billing/runs", response_model=BillingRunsOut)
def billing_runs(services: Services) -> BillingRunsOut:
    return BillingRunsOut(runs=services.billing_service.runs())
