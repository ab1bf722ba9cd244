"""Payment callbacks: Zibal sends the payer back; the gateway, never the callback, says what was paid.

A callback only names a trackId and an order. The invoice is marked paid when Zibal's verify (or, on
"already verified", its inquiry) confirms that this very transaction is paid, for the invoice's exact
amount. Forged, replayed and repeated callbacks change nothing or mark it paid once.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

from shared.billing import parse_invoice_id
from shared.data.billing import BillingRepository
from shared.data.zibal import ALREADY_VERIFIED, SUCCESS, VERIFIED_STATUS, GatewayUnavailable
from shared.errors import InvalidInput, NotFound, UpstreamFailed
from shared.models import Invoice, InvoiceStatus
from shared.observability import PAYMENTS_REJECTED, count, logger


class VerifyingGateway(Protocol):
    def verify(self, track_id: str) -> dict[str, Any]: ...

    def inquiry(self, track_id: str) -> dict[str, Any]: ...


class PaymentService:
    def __init__(self, billing: BillingRepository, gateway: VerifyingGateway, clock: Callable[[], datetime]) -> None:
        self._billing = billing
        self._gateway = gateway
        self._clock = clock

    def confirm(self, track_id: str, order_id: str, success: bool) -> Invoice:
        """Handle Zibal's callback for `order_id` (an invoice id) and `track_id`; returns the invoice.

        `success` is what the callback claims: a payer who cancelled is answered without asking Zibal, and a
        claimed success that Zibal does not confirm counts as a rejected (possibly forged) payment.
        """
        invoice = self._invoice(order_id)
        if invoice.payment_track_id != track_id:
            raise self._reject(invoice, f"trackId {track_id} does not belong to invoice {order_id}")
        if invoice.status == InvoiceStatus.PAID:
            return invoice  # a replayed callback: nothing to do, and no second verify
        if invoice.status != InvoiceStatus.OPEN:
            raise self._reject(invoice, f"invoice {order_id} is {invoice.status.value}, not awaiting payment")
        if not success:
            raise InvalidInput("the payment was not completed (cancelled or failed at the gateway)")
        transaction = self._verified(invoice, track_id)
        if int(transaction.get("amount", -1)) != invoice.amount_rials:
            raise self._reject(
                invoice, f"Zibal reports {transaction.get('amount')} Rials paid, the invoice is {invoice.amount_rials}"
            )
        reference = str(transaction.get("refNumber") or "")
        if self._billing.mark_paid(invoice, track_id, self._clock(), reference):
            logger.info("invoice paid", extra={"invoice_id": order_id, "track_id": track_id, "reference": reference})
        return self._billing.get_invoice(invoice.tenant_id, invoice.invoice_id) or invoice

    def _invoice(self, order_id: str) -> Invoice:
        parsed = parse_invoice_id(order_id)
        invoice = self._billing.get_invoice(parsed[0], order_id) if parsed else None
        if invoice is None:
            raise NotFound(f"invoice {order_id} not found")
        return invoice

    def _verified(self, invoice: Invoice, track_id: str) -> dict[str, Any]:
        """Zibal's word that the transaction is paid: verify, or inquiry when it was verified before."""
        try:
            answer = self._gateway.verify(track_id)
            if int(answer.get("result", -1)) == ALREADY_VERIFIED:
                answer = self._gateway.inquiry(track_id)
                if int(answer.get("result", -1)) != SUCCESS or int(answer.get("status", -1)) != VERIFIED_STATUS:
                    raise self._reject(invoice, f"Zibal does not report transaction {track_id} as paid")
            elif int(answer.get("result", -1)) != SUCCESS:
                raise self._reject(
                    invoice, f"payment not completed: Zibal answered {answer.get('result')} ({answer.get('message')})"
                )
        except GatewayUnavailable as error:
            # Not the caller's fault: Zibal calls back again, and the payer can retry; nothing was changed.
            raise UpstreamFailed("could not reach Zibal to verify the payment; try again shortly") from error
        return answer

    def _reject(self, invoice: Invoice, reason: str) -> InvalidInput:
        count(PAYMENTS_REJECTED, 1)
        logger.warning("payment callback rejected", extra={"invoice_id": invoice.invoice_id, "reason": reason})
        return InvalidInput(reason)
