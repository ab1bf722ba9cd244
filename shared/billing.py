"""Billing: close a day into one invoice per tenant, request its payment link, email it.

Each step leaves its result on the invoice before the next one starts, so a re-run picks up where a
failed run stopped and never repeats a finished step (exactly-once hardening is issue 3's work).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Protocol

from shared.data.billing import BillingRepository
from shared.data.tenants import TenantRepository
from shared.data.usage import UsageRepository
from shared.data.zibal import MIN_AMOUNT_RIALS, GatewayUnavailable, PaymentRejected, PaymentRequest
from shared.errors import NotFound
from shared.metering import billing_day
from shared.models import BillingRun, BillingRunStatus, Invoice, InvoiceLine, InvoiceStatus, UsageCounter
from shared.observability import BILLING_RUN_FAILED, INVOICES_CREATED, logger, metrics


class PaymentGateway(Protocol):
    def request_payment(
        self, amount_rials: int, order_id: str, description: str, callback_url: str
    ) -> PaymentRequest: ...


class MailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> str: ...


class PriceTable:
    """Tomans per 1,000 tokens by model; 'default' prices any model not listed."""

    def __init__(self, prices: dict[str, int]) -> None:
        self._prices = prices

    def price(self, model: str) -> int:
        return self._prices.get(model, self._prices["default"])

    def line(self, counter: UsageCounter) -> InvoiceLine:
        price = self.price(counter.model)
        return InvoiceLine(
            model=counter.model,
            input_tokens=counter.input_tokens,
            output_tokens=counter.output_tokens,
            tokens=counter.total_tokens,
            price_tomans_per_1k=price,
            # Whole Tomans, rounded up: a started thousand tokens is charged pro rata, never for free.
            amount_tomans=math.ceil(counter.total_tokens * price / 1000),
        )


def invoice_id_for(tenant_id: str, period: date) -> str:
    return f"inv-{tenant_id}-{period.strftime('%Y%m%d')}"


def previous_day(now: datetime, timezone: str) -> date:
    """The day the nightly run closes: yesterday, in the billing time zone."""
    return billing_day(now, timezone) - timedelta(days=1)


class BillingService:
    def __init__(
        self,
        usage: UsageRepository,
        tenants: TenantRepository,
        billing: BillingRepository,
        prices: PriceTable,
        gateway: PaymentGateway,
        mailer: MailSender,
        callback_url: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._usage = usage
        self._tenants = tenants
        self._billing = billing
        self._prices = prices
        self._gateway = gateway
        self._mailer = mailer
        self._callback_url = callback_url
        self._clock = clock

    def close_day(self, period: date, trigger: str) -> BillingRun:
        started = self._clock()
        by_tenant: dict[str, list[UsageCounter]] = defaultdict(list)
        for counter in self._usage.counters_for_day(period):
            by_tenant[counter.tenant_id].append(counter)
        created = existing = 0
        errors: list[str] = []
        for tenant_id, counters in sorted(by_tenant.items()):
            try:
                if self._bill_tenant(tenant_id, period, counters):
                    created += 1
                else:
                    existing += 1
            except Exception as error:  # one tenant's failure must not stop the others' invoices
                logger.exception("billing a tenant failed", extra={"tenant_id": tenant_id, "period": str(period)})
                errors.append(f"{tenant_id}: {type(error).__name__}: {error}")
        run = BillingRun(
            period=period,
            status=BillingRunStatus.FAILED if errors else BillingRunStatus.SUCCEEDED,
            trigger=trigger,
            tenants=len(by_tenant),
            invoices_created=created,
            invoices_existing=existing,
            errors=tuple(errors),
            started_at=started,
            finished_at=self._clock(),
        )
        self._billing.record_run(run)
        metrics.add_metric(name=INVOICES_CREATED, unit="Count", value=created)
        metrics.add_metric(name=BILLING_RUN_FAILED, unit="Count", value=1 if errors else 0)
        logger.info("billing run finished", extra=run.model_dump(mode="json"))
        return run

    def runs(self) -> list[BillingRun]:
        return self._billing.list_runs()

    def _bill_tenant(self, tenant_id: str, period: date, counters: Iterable[UsageCounter]) -> bool:
        """Invoice one tenant for the period; True when the invoice is new."""
        invoice = self._draft(tenant_id, period, counters)
        created = self._billing.create_invoice(invoice)
        if not created:
            stored = self._billing.get_invoice(tenant_id, invoice.invoice_id)
            if stored is None:
                raise NotFound(f"invoice {invoice.invoice_id} vanished")
            invoice = stored
        invoice = self._request_payment(invoice)
        self._send_email(invoice)
        return created

    def _draft(self, tenant_id: str, period: date, counters: Iterable[UsageCounter]) -> Invoice:
        lines = tuple(self._prices.line(c) for c in sorted(counters, key=lambda c: c.model))
        amount = sum(line.amount_tomans for line in lines)
        return Invoice(
            invoice_id=invoice_id_for(tenant_id, period),
            tenant_id=tenant_id,
            period=period,
            lines=lines,
            total_tokens=sum(line.tokens for line in lines),
            amount_tomans=amount,
            status=InvoiceStatus.OPEN if amount > 0 else InvoiceStatus.NOTHING_DUE,
            created_at=self._clock(),
        )

    def _request_payment(self, invoice: Invoice) -> Invoice:
        if invoice.status != InvoiceStatus.OPEN or invoice.payment_track_id:
            return invoice
        if invoice.amount_rials < MIN_AMOUNT_RIALS:
            update = {"status": InvoiceStatus.PAYMENT_FAILED, "payment_error": "below Zibal's minimum of 1,000 Rials"}
        else:
            try:
                payment = self._gateway.request_payment(
                    amount_rials=invoice.amount_rials,
                    order_id=invoice.invoice_id,
                    description=f"DocuChat usage {invoice.period.isoformat()}",
                    callback_url=self._callback_url,
                )
            except PaymentRejected as rejected:
                update = {"status": InvoiceStatus.PAYMENT_FAILED, "payment_error": str(rejected)}
            except GatewayUnavailable:
                raise  # nothing was stored: the next run asks again
            else:
                update = {"payment_track_id": payment.track_id, "payment_url": payment.payment_url}
        invoice = invoice.model_copy(update=update)
        self._billing.save_invoice(invoice)
        return invoice

    def _send_email(self, invoice: Invoice) -> None:
        if invoice.email_message_id:
            return
        tenant = self._tenants.get(invoice.tenant_id)
        if tenant is None:
            raise NotFound(f"tenant {invoice.tenant_id} not found")
        message_id = self._mailer.send(tenant.email, *invoice_email(invoice, tenant.name))
        self._billing.save_invoice(invoice.model_copy(update={"email_message_id": message_id}))


def invoice_email(invoice: Invoice, tenant_name: str) -> tuple[str, str]:
    """Subject and plain-text body of an invoice email (amounts shown in Tomans)."""
    lines = "\n".join(
        f"  {line.model}: {line.tokens:,} tokens x {line.price_tomans_per_1k} Tomans/1K = {line.amount_tomans:,} Tomans"
        for line in invoice.lines
    )
    if invoice.payment_url:
        action = f"Pay here: {invoice.payment_url}"
    elif invoice.status == InvoiceStatus.NOTHING_DUE:
        action = "Nothing is due."
    else:
        action = f"No payment link could be created ({invoice.payment_error}); we will contact you."
    subject = f"DocuChat invoice {invoice.invoice_id}: {invoice.amount_tomans:,} Tomans"
    body = (
        f"Hello {tenant_name},\n\nYour DocuChat usage for {invoice.period.isoformat()}:\n{lines}\n\n"
        f"Total: {invoice.total_tokens:,} tokens, {invoice.amount_tomans:,} Tomans.\n{action}\n"
    )
    return subject, body
