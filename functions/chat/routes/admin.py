"""The admin API: tenants, their keys, and billing runs. Authenticated with the admin key."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from functions.chat.deps import PageParams, Services, admin, known_id
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import (
    ID,
    AuditOut,
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
from shared.models import ALL_SCOPES, ApiKey, Tenant

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(admin)], responses=TENANT_ERRORS)


def _actor(request: Request) -> str:
    """Who did it: the admin key, and from where (the API Gateway event's source IP, or the socket's)."""
    event = request.scope.get("aws.event") or {}
    source = event.get("requestContext", {}).get("http", {}).get("sourceIp")
    source = source or (request.client.host if request.client else "unknown")
    return f"admin-key@{source}"


def _tenant(services: Services, tenant_id: str) -> Tenant:
    return services.administration.tenant(known_id(tenant_id, "tenant"))


@router.post("/tenants", status_code=201, response_model=TenantOut)
def create_tenant(body: TenantCreate, request: Request, services: Services) -> TenantOut:
    return TenantOut(tenant=services.administration.create(_actor(request), body.name, body.email))


@router.get("/tenants", response_model=TenantList)
def list_tenants(services: Services, page: PageParams) -> TenantList:
    """Oldest first, a page at a time: pass `next_cursor` back as `cursor` for the next page."""
    found = services.tenants.page_tenants(page.limit, page.cursor)
    return TenantList(tenants=found.items, next_cursor=found.next_cursor)


@router.patch("/tenants/{tenant_id}", response_model=TenantOut)
def update_tenant(tenant_id: str, body: TenantUpdate, request: Request, services: Services) -> TenantOut:
    """Name, email, status, prices; `limits` (a field set to null is unlimited; fields not given keep theirs);
    `jwt`: trust the tenant's identity provider (its issuer may belong to this tenant only); `"jwt": null` stops
    trusting it."""
    changes = body.model_dump(exclude_none=True, exclude={"limits"})
    if "jwt" in body.model_fields_set and body.jwt is None:
        changes["jwt"] = None
    limits = body.limits.model_dump(exclude_unset=True) if body.limits is not None else None
    tenant = services.administration.update(_actor(request), known_id(tenant_id, "tenant"), changes, limits)
    return TenantOut(tenant=tenant)


@router.post("/tenants/{tenant_id}/keys", status_code=201, response_model=KeyCreated)
def create_key(tenant_id: str, body: KeyCreate, request: Request, services: Services) -> KeyCreated:
    """A new key: all scopes unless `scopes` names fewer; `expires_at` for one that stops by itself; `limits`
    tighter than the tenant's. Rotation: issue the new key, then revoke the old one (with a grace period)."""
    limits = body.limits.model_dump(exclude_none=True) if body.limits is not None else None
    scopes = [scope.value for scope in body.scopes] if body.scopes is not None else None
    plaintext, record = services.administration.issue_key(
        _actor(request), known_id(tenant_id, "tenant"), body.name, scopes, body.expires_at, limits
    )
    return KeyCreated(
        key_id=record.key_id,
        prefix=record.prefix,
        api_key=plaintext,
        created_at=record.created_at,
        scopes=sorted(record.scopes) if record.scopes is not None else sorted(ALL_SCOPES),
        expires_at=record.expires_at,
    )


@router.get("/tenants/{tenant_id}/keys")
def list_keys(tenant_id: str, services: Services) -> dict[str, list[KeyOut]]:
    keys = services.tenants.list_keys(_tenant(services, tenant_id).tenant_id)
    return {"keys": [_key_out(k) for k in keys]}


def _key_out(key: ApiKey) -> KeyOut:
    fields = key.model_dump(exclude={"key_hash", "tenant_id", "scopes"})
    return KeyOut(**fields, scopes=sorted(key.scopes) if key.scopes is not None else sorted(ALL_SCOPES))


@router.delete("/tenants/{tenant_id}/keys/{key_id}", status_code=204)
def revoke_key(
    tenant_id: str,
    key_id: str,
    request: Request,
    services: Services,
    grace_seconds: Annotated[int, Query(ge=0, le=30 * 86_400, description="Keep it working this long.")] = 0,
) -> Response:
    """Revoke a key, at once or after `grace_seconds`: refused from then on, warm functions included."""
    actor = _actor(request)
    services.administration.revoke_key(actor, known_id(tenant_id, "tenant"), known_id(key_id, "key"), grace_seconds)
    return Response(status_code=204)


@router.get("/audit", response_model=AuditOut)
def audit(
    services: Services,
    page: PageParams,
    tenant_id: Annotated[str | None, Query(pattern=ID, description="Only this tenant's records.")] = None,
) -> AuditOut:
    """Every admin action, newest first: who, what, on what, with which details, when."""
    found = services.audit.page(tenant_id, page.limit, page.cursor)
    return AuditOut(records=found.items, next_cursor=found.next_cursor)


@router.post("/billing/run")
def run_billing(body: BillingRunRequest, request: Request, services: Services) -> dict[str, Any]:
    """Runs the nightly billing job for `date` now. Re-running a date creates nothing twice."""
    run = services.run_billing(body.date)
    services.audit.record(_actor(request), "billing.run", body.date.isoformat(), None, outcome=run.get("status"))
    return run


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
