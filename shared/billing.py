"""Billing: close a day into one invoice per tenant, request its payment link, email it, each once.

For each tenant: close the day (from then on its events are metered as late usage), read the day's
counters consistently, and create the invoice with a conditional write. The payment request and the
email are each reserved with a lease on the invoice before they are made and recorded right after, so
re-runs, the scheduler's retries and double invocations never repeat them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, Protocol

from shared.data.billing import BillingRepository
from shared.data.tenants import TenantRepository
from shared.data.usage import UsageRepository
from shared.data.zibal import MIN_AMOUNT_RIALS, GatewayUnavailable, PaymentRejected, PaymentRequest
from shared.metering import billing_day
from shared.models import (
    CACHED_SUFFIX,
    BillingRun,
    BillingRunStatus,
    Invoice,
    InvoiceLine,
    InvoiceStatus,
    LateUsage,
    LineKind,
    ModelPrice,
    Tenant,
    TokenCounts,
    UsageCounter,
)
from shared.observability import (
    BILLING_RUN_FAILED,
    INVOICED_TOKENS,
    INVOICED_TOMANS,
    INVOICES_CREATED,
    count,
    logger,
)

# The price table's entry for answers served from the response cache; free unless a stage or tenant sets it.
CACHED_PRICE = "cached"
FREE = ModelPrice(input=0, output=0)
# How long a run may hold a step before another run may assume it died and take over.
STEP_LEASE = timedelta(minutes=10)


class PaymentGateway(Protocol):
    def request_payment(
        self, amount_rials: int, order_id: str, description: str, callback_url: str
    ) -> PaymentRequest: ...


class EventEmitter(Protocol):
    def emit_or_raise(self, tenant_id: str, event_type: str, data: dict[str, Any]) -> str: ...


class MailSender(Protocol):
    def send(self, to: str, subject: str, body: str) -> str: ...


def parse_prices(raw: dict[str, Any]) -> dict[str, ModelPrice]:
    """{"default": 20, "gpt-4o": {"input": 10, "output": 40}}: a number prices input and output alike."""
    prices = {
        model: ModelPrice(input=p, output=p) if isinstance(p, int) else ModelPrice.model_validate(p)
        for model, p in raw.items()
    }
    if "default" not in prices:
        raise ValueError("a price table needs a 'default' entry")
    return prices


class PriceTable:
    """Tomans per 1,000 tokens by model; a tenant's own prices replace the stage's."""

    def __init__(self, prices: dict[str, ModelPrice]) -> None:
        self._prices = prices

    def for_tenant(self, tenant: Tenant) -> PriceTable:
        return PriceTable({**self._prices, **tenant.prices}) if tenant.prices else self

    def price(self, model: str) -> ModelPrice:
        if model.endswith(CACHED_SUFFIX):  # an answer served from the response cache
            return self._prices.get(CACHED_PRICE, FREE)
        return self._prices.get(model, self._prices["default"])

    def line(self, kind: LineKind, usage_day: date, counter: TokenCounts) -> InvoiceLine:
        price = self.price(counter.model)
        if kind == LineKind.USAGE and counter.model.endswith(CACHED_SUFFIX):
            kind = LineKind.CACHED
        thousandths = counter.input_tokens * price.input + counter.output_tokens * price.output
        return InvoiceLine(
            kind=kind,
            usage_day=usage_day,
            model=counter.model,
            input_tokens=counter.input_tokens,
            output_tokens=counter.output_tokens,
            tokens=counter.total_tokens,
            events=counter.events,
            input_price=price.input,
            output_price=price.output,
            # Whole Tomans, rounded up per line: a started thousand tokens is charged pro rata, never free.
            amount_tomans=math.ceil(thousandths / 1000),
        )


def invoice_id_for(tenant_id: str, period: date) -> str:
    return f"inv-{tenant_id}-{period.strftime('%Y%m%d')}"


def parse_invoice_id(invoice_id: str) -> tuple[str, date] | None:
    """(tenant id, period) of an invoice id, or None for anything else."""
    parts = invoice_id.split("-")
    if len(parts) != 3 or parts[0] != "inv" or len(parts[2]) != 8 or not parts[2].isdigit():
        return None
    try:
        return parts[1], datetime.strptime(parts[2], "%Y%m%d").date()
    except ValueError:
        return None


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
        events: EventEmitter | None = None,
    ) -> None:
        self._events = events  # the tenant's webhook hears of each new invoice (invoice.created)
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
        created = existing = billed = 0
        errors: list[str] = []
        for tenant in self._tenants.list_tenants():
            try:
                outcome = self._bill_tenant(tenant, period)
            except Exception as error:  # one tenant's failure must not stop the others' invoices
                logger.exception(
                    "billing a tenant failed", extra={"tenant_id": tenant.tenant_id, "period": str(period)}
                )
                errors.append(f"{tenant.tenant_id}: {type(error).__name__}: {error}")
                continue
            if outcome is not None:
                billed += 1
                created += outcome
                existing += not outcome
        run = BillingRun(
            period=period,
            status=BillingRunStatus.FAILED if errors else BillingRunStatus.SUCCEEDED,
            trigger=trigger,
            tenants=billed,
            invoices_created=created,
            invoices_existing=existing,
            errors=tuple(errors),
            started_at=started,
            finished_at=self._clock(),
        )
        self._billing.record_run(run)
        count(INVOICES_CREATED, created)
        count(BILLING_RUN_FAILED, 1 if errors else 0)
        logger.info("billing run finished", extra=run.model_dump(mode="json"))
        return run

    def runs(self) -> list[BillingRun]:
        return self._billing.list_runs()

    def _bill_tenant(self, tenant: Tenant, period: date) -> bool | None:
        """Invoice one tenant for the period: True when new, False when it existed, None without usage."""
        self._usage.close_day(tenant.tenant_id, period, self._clock())
        counters, late = self._usage.billable(tenant.tenant_id, period)
        invoice = self._draft(tenant, period, counters, late)
        if invoice is None:
            return None
        created = self._billing.create_invoice(invoice)
        if created:  # a re-run finds the invoice made before: its figures were counted then
            count(INVOICED_TOKENS, invoice.total_tokens)
            count(INVOICED_TOMANS, invoice.amount_tomans)
        stored = invoice if created else self._billing.get_invoice(tenant.tenant_id, invoice.invoice_id)
        if stored is None:
            raise RuntimeError(f"invoice {invoice.invoice_id} vanished")
        stored = self._request_payment(stored)
        self._send_email(stored, tenant)
        self._announce(self._current(stored))
        return created

    def _announce(self, invoice: Invoice) -> None:
        """invoice.created for the tenant's webhook, once the invoice is emailed (so it has its payment link).

        A step like the email: a run that dies before recording it queues it again, so a receiver may see an
        invoice twice (it has the same invoice_id) but never not at all."""
        if self._events is None or not invoice.email_message_id:
            return
        now = self._clock()
        if not self._billing.take_lease(invoice, "webhook", now, now + STEP_LEASE):
            return
        data = {
            "invoice_id": invoice.invoice_id,
            "period": invoice.period.isoformat(),
            "total_tokens": invoice.total_tokens,
            "amount_tomans": invoice.amount_tomans,
            "status": invoice.status.value,
            "payment_url": invoice.payment_url,
        }
        try:
            event_id = self._events.emit_or_raise(invoice.tenant_id, "invoice.created", data)
        except Exception:
            self._billing.release_lease(invoice, "webhook")
            raise
        self._billing.record_webhook(invoice, event_id)

    def _draft(
        self, tenant: Tenant, period: date, counters: list[UsageCounter], late: list[LateUsage]
    ) -> Invoice | None:
        prices = self._prices.for_tenant(tenant)
        lines = [prices.line(LineKind.USAGE, period, c) for c in counters]
        lines += [prices.line(LineKind.LATE, entry.event_day, entry) for entry in late]
        if not lines:
            return None
        amount = sum(line.amount_tomans for line in lines)
        return Invoice(
            invoice_id=invoice_id_for(tenant.tenant_id, period),
            tenant_id=tenant.tenant_id,
            period=period,
            lines=tuple(lines),
            total_tokens=sum(line.tokens for line in lines),
            amount_tomans=amount,
            status=InvoiceStatus.OPEN if amount > 0 else InvoiceStatus.NOTHING_DUE,
            created_at=self._clock(),
        )

    def _request_payment(self, invoice: Invoice) -> Invoice:
        """Ask Zibal for a payment link once; the trackId is stored before the link is ever sent."""
        if invoice.status != InvoiceStatus.OPEN:
            return invoice
        now = self._clock()
        if not self._billing.take_lease(invoice, "payment", now, now + STEP_LEASE):
            return self._current(invoice)  # done already, or another run is at it right now
        if invoice.amount_rials < MIN_AMOUNT_RIALS:
            self._billing.record_payment_refused(invoice, "below Zibal's minimum of 1,000 Rials")
            return self._current(invoice)
        try:
            payment = self._gateway.request_payment(
                amount_rials=invoice.amount_rials,
                order_id=invoice.invoice_id,
                description=f"DocuChat usage {invoice.period.isoformat()}",
                callback_url=self._callback_url,
            )
        except PaymentRejected as rejected:
            self._billing.record_payment_refused(invoice, str(rejected))
        except GatewayUnavailable:
            self._billing.release_lease(invoice, "payment")  # nothing was created: the next run asks again
            raise
        else:
            self._billing.record_payment_link(invoice, payment.track_id, payment.payment_url)
        return self._current(invoice)

    def _send_email(self, invoice: Invoice, tenant: Tenant) -> None:
        """Email the invoice once, after its payment step has an outcome."""
        if invoice.status == InvoiceStatus.OPEN and not invoice.payment_url:
            return  # the payment step is still in another run's hands; the email waits for its link
        now = self._clock()
        if not self._billing.take_lease(invoice, "email", now, now + STEP_LEASE):
            return
        try:
            message_id = self._mailer.send(tenant.email, *invoice_email(invoice, tenant.name))
        except Exception:
            self._billing.release_lease(invoice, "email")
            raise
        self._billing.record_email(invoice, message_id)

    def _current(self, invoice: Invoice) -> Invoice:
        return self._billing.get_invoice(invoice.tenant_id, invoice.invoice_id) or invoice


def invoice_email(invoice: Invoice, tenant_name: str) -> tuple[str, str]:
    """Subject and plain-text body of an invoice email (amounts shown in Tomans)."""
    lines = "\n".join(
        f"  {'late usage of ' + line.usage_day.isoformat() + ', ' if line.kind == LineKind.LATE else ''}"
        f"{line.model}: {line.input_tokens:,} input x {line.input_price} + {line.output_tokens:,} output x "
        f"{line.output_price} Tomans/1K = {line.amount_tomans:,} Tomans"
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
