"""The tenant's webhook: where DocuChat sends its events, signed, and the log of what was delivered."""

from __future__ import annotations

from fastapi import APIRouter, Response

from functions.chat.deps import PageParams, Services, WebhookManager
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import DeliveryList, WebhookIn, WebhookOut
from shared.errors import NotFound

router = APIRouter(prefix="/v1/webhook", tags=["webhooks"], responses=TENANT_ERRORS)


@router.put("", response_model=WebhookOut)
def set_webhook(body: WebhookIn, caller: WebhookManager, services: Services) -> WebhookOut:
    """Set (or replace) the webhook. The reply holds its signing secret, shown this once: keep it.

    Each delivery is a POST of `{id, type, created, data}` with `DocuChat-Signature: t=<unix>,v1=<hex>`, the
    HMAC-SHA256 of `"<t>.<raw body>"` keyed with the secret (docs/webhooks.md shows how to verify it)."""
    config = services.webhook_settings.configure(caller.tenant_id, body.url, list(body.events))
    actor = f"key:{caller.key_id}"
    services.audit.record(actor, "webhook.set", config.url, caller.tenant_id, events=list(config.events))
    return WebhookOut(url=config.url, events=list(config.events), created_at=config.created_at, secret=config.secret)


@router.get("", response_model=WebhookOut)
def get_webhook(caller: WebhookManager, services: Services) -> WebhookOut:
    config = services.webhook_repository.get(caller.tenant_id)
    if config is None:
        raise NotFound("no webhook is set")
    return WebhookOut(url=config.url, events=list(config.events), created_at=config.created_at)


@router.delete("", status_code=204)
def delete_webhook(caller: WebhookManager, services: Services) -> Response:
    if not services.webhook_repository.delete(caller.tenant_id):
        raise NotFound("no webhook is set")
    services.audit.record(f"key:{caller.key_id}", "webhook.deleted", "webhook", caller.tenant_id)
    return Response(status_code=204)


@router.get("/deliveries", response_model=DeliveryList)
def deliveries(caller: WebhookManager, services: Services, page: PageParams) -> DeliveryList:
    """Newest first: each event's attempts, with their status codes and times, and where it stands."""
    found = services.webhook_repository.page(caller.tenant_id, page.limit, page.cursor)
    return DeliveryList(deliveries=found.items, next_cursor=found.next_cursor)
