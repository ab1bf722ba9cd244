"""A tenant's usage and invoices."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter

from functions.chat.deps import PageParams, Services, UsageReader
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import BudgetOut, InvoiceList, InvoiceOut, IsoDate, UsageDay, UsageOut
from shared.billing import parse_invoice_id
from shared.errors import InvalidInput, NotFound
from shared.metering import billing_day

router = APIRouter(prefix="/v1", tags=["usage and invoices"], responses=TENANT_ERRORS)
MAX_USAGE_DAYS = 366


@router.get("/usage", response_model=UsageOut)
def usage(
    caller: UsageReader, services: Services, start: IsoDate | None = None, end: IsoDate | None = None
) -> UsageOut:
    """Tokens per billing day and model, from `start` to `end` inclusive (default: the last 30 days), and the
    month's token budget."""
    end = end or billing_day(services.clock(), services.settings.billing_timezone)
    start = start or end - timedelta(days=29)
    if start > end:
        raise InvalidInput("start must not be after end")
    if (end - start).days >= MAX_USAGE_DAYS:
        raise InvalidInput(f"a usage query spans at most {MAX_USAGE_DAYS} days")
    counters = services.usage.counters_for_tenant(caller.tenant_id, start, end)
    days = [
        UsageDay(
            day=c.day,
            model=c.model,
            input_tokens=c.input_tokens,
            output_tokens=c.output_tokens,
            total_tokens=c.total_tokens,
            events=c.events,
        )
        for c in counters
    ]
    budget = services.budgets.status(caller.tenant_id, caller.limits.monthly_token_budget)
    return UsageOut(
        start=start,
        end=end,
        days=days,
        total_tokens=sum(d.total_tokens for d in days),
        budget=BudgetOut(**budget.__dict__),
    )


@router.get("/invoices", response_model=InvoiceList)
def list_invoices(caller: UsageReader, services: Services, page: PageParams) -> InvoiceList:
    """Newest period first, a page at a time: pass `next_cursor` back as `cursor` for the next page."""
    found = services.billing.page_invoices(caller.tenant_id, page.limit, page.cursor)
    return InvoiceList(invoices=[InvoiceOut.of(i) for i in found.items], next_cursor=found.next_cursor)


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
def get_invoice(invoice_id: str, caller: UsageReader, services: Services) -> InvoiceOut:
    # An id that is not an invoice id cannot exist; lookups are scoped to the caller's tenant either way.
    invoice = services.billing.get_invoice(caller.tenant_id, invoice_id) if parse_invoice_id(invoice_id) else None
    if invoice is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return InvoiceOut.of(invoice)
