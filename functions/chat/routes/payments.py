"""Zibal's payment callback: the payer's browser comes back here; Zibal's verify decides."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.chat.deps import Services
from functions.chat.openapi import PUBLIC_ERRORS
from functions.chat.schemas import PaymentConfirmation

router = APIRouter(prefix="/v1/payments", tags=["payments"], responses=PUBLIC_ERRORS)


@router.get("/zibal/callback", response_model=PaymentConfirmation)
def zibal_callback(
    services: Services,
    track_id: Annotated[str, Query(alias="trackId", pattern=r"^\d{1,20}$")],
    order_id: Annotated[str, Query(alias="orderId", min_length=1, max_length=80)],
    success: Annotated[str | None, Query(max_length=8)] = None,
    status: Annotated[str | None, Query(max_length=8)] = None,
) -> PaymentConfirmation:
    """Zibal's `success` and `status` are claims: only its verify marks an invoice paid."""
    invoice = services.payments.confirm(track_id, order_id, success=success == "1")
    return PaymentConfirmation(invoice_id=invoice.invoice_id, status=invoice.status.value, paid_at=invoice.paid_at)
