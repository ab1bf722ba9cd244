"""Invoices (billing table: pk = tenant id) and the log of billing runs (pk = "billing-run").

An invoice is created once, by a conditional put. Each later step (the payment request, the email,
the payment itself) changes only its own attributes, under a condition, so two runs or two callbacks
working on one invoice can never undo each other's work or do a step twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError

from shared.data.dynamo import Page, attributes, from_item, is_condition_failure, query_all, query_page, to_item, values
from shared.ids import new_id
from shared.models import BillingRun, Invoice, InvoiceStatus

INVOICE_PREFIX = "invoice#"
RUNS_PK = "billing-run"
Step = Literal["payment", "email", "webhook"]
# A step is done once its result attribute exists.
_STEP_DONE = {
    "payment": "attribute_not_exists(payment_track_id) AND attribute_not_exists(payment_error)",
    "email": "attribute_not_exists(email_message_id)",
    "webhook": "attribute_not_exists(webhook_event_id)",
}


class BillingRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def _key(self, tenant_id: str, invoice_id: str) -> dict[str, Any]:
        return to_item({"pk": tenant_id, "sk": INVOICE_PREFIX + invoice_id})

    def create_invoice(self, invoice: Invoice) -> bool:
        """Store a new invoice; False when the tenant already has one for that period."""
        item = {"pk": invoice.tenant_id, "sk": INVOICE_PREFIX + invoice.invoice_id, **invoice.model_dump(mode="json")}
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def get_invoice(self, tenant_id: str, invoice_id: str) -> Invoice | None:
        item = self._db.get_item(TableName=self._table, Key=self._key(tenant_id, invoice_id), ConsistentRead=True).get(
            "Item"
        )
        return Invoice.model_validate(attributes(from_item(item))) if item else None

    def list_invoices(self, tenant_id: str) -> list[Invoice]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=INVOICE_PREFIX),
            ConsistentRead=True,
        )
        return sorted(
            (Invoice.model_validate(attributes(item)) for item in items), key=lambda i: i.period, reverse=True
        )

    def page_invoices(self, tenant_id: str, limit: int, cursor: str | None = None) -> Page[Invoice]:
        """Newest period first: invoice ids end in their period's date."""
        items, next_cursor = query_page(
            self._db,
            listing="invoices",
            fixed={"pk": tenant_id},
            cursor_keys=("sk",),
            limit=limit,
            cursor=cursor,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=INVOICE_PREFIX),
            ScanIndexForward=False,
        )
        return Page([Invoice.model_validate(attributes(item)) for item in items], next_cursor)

    def take_lease(self, invoice: Invoice, step: Step, now: datetime, until: datetime) -> bool:
        """Reserve a step for this run: False when it is done, or another run holds an unexpired lease."""
        return self._update(
            invoice,
            f"SET {step}_lease_until = :until",
            f"{_STEP_DONE[step]} AND (attribute_not_exists({step}_lease_until) OR {step}_lease_until < :now)",
            until=until.isoformat(),
            now=now.isoformat(),
        )

    def release_lease(self, invoice: Invoice, step: Step) -> None:
        self._update(invoice, f"REMOVE {step}_lease_until", "attribute_exists(pk)")

    def record_payment_link(self, invoice: Invoice, track_id: str, url: str) -> bool:
        return self._update(
            invoice,
            "SET payment_track_id = :track, payment_url = :url REMOVE payment_lease_until",
            _STEP_DONE["payment"],
            track=track_id,
            url=url,
        )

    def record_payment_refused(self, invoice: Invoice, reason: str) -> bool:
        return self._update(
            invoice,
            "SET payment_error = :reason, #status = :failed REMOVE payment_lease_until",
            _STEP_DONE["payment"],
            reason=reason,
            failed=InvoiceStatus.PAYMENT_FAILED.value,
        )

    def record_email(self, invoice: Invoice, message_id: str) -> bool:
        return self._update(
            invoice, "SET email_message_id = :message REMOVE email_lease_until", _STEP_DONE["email"], message=message_id
        )

    def record_webhook(self, invoice: Invoice, event_id: str) -> bool:
        return self._update(
            invoice,
            "SET webhook_event_id = :event REMOVE webhook_lease_until",
            _STEP_DONE["webhook"],
            event=event_id,
        )

    def mark_paid(self, invoice: Invoice, track_id: str, paid_at: datetime, reference: str) -> bool:
        """Open -> paid, for this payment's track id only; False when it was paid already."""
        return self._update(
            invoice,
            "SET #status = :paid, paid_at = :paid_at, payment_reference = :reference",
            "#status = :open AND payment_track_id = :track",
            paid=InvoiceStatus.PAID.value,
            open=InvoiceStatus.OPEN.value,
            paid_at=paid_at.isoformat(),
            reference=reference,
            track=track_id,
        )

    def _update(self, invoice: Invoice, expression: str, condition: str, **params: Any) -> bool:
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(invoice.tenant_id, invoice.invoice_id),
                UpdateExpression=expression,
                ConditionExpression=f"attribute_exists(pk) AND ({condition})",
                **({"ExpressionAttributeNames": {"#status": "status"}} if "#status" in expression + condition else {}),
                **({"ExpressionAttributeValues": values(**params)} if params else {}),
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def record_run(self, run: BillingRun) -> None:
        # Newest first when listed; the random tail keeps two runs started in the same instant apart.
        sk = f"{run.started_at.isoformat()}#{run.period.isoformat()}#{new_id('r')}"
        item = {"pk": RUNS_PK, "sk": sk, **run.model_dump(mode="json")}
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def list_runs(self, limit: int = 50) -> list[BillingRun]:
        response = self._db.query(
            TableName=self._table,
            KeyConditionExpression="pk = :runs",
            ExpressionAttributeValues=values(runs=RUNS_PK),
            ScanIndexForward=False,
            Limit=limit,
        )
        return [BillingRun.model_validate(attributes(from_item(item))) for item in response.get("Items", [])]
