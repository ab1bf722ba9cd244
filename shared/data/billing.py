"""Invoices (billing table: pk = tenant id) and the log of billing runs (pk = "billing-run")."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import attributes, from_item, is_condition_failure, query_all, to_item, values
from shared.ids import new_id
from shared.models import BillingRun, Invoice

INVOICE_PREFIX = "invoice#"
RUNS_PK = "billing-run"


class BillingRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def create_invoice(self, invoice: Invoice) -> bool:
        """Store a new invoice; False when the tenant already has one for that period."""
        item = {"pk": invoice.tenant_id, "sk": INVOICE_PREFIX + invoice.invoice_id, **_dump(invoice)}
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def save_invoice(self, invoice: Invoice) -> None:
        item = {"pk": invoice.tenant_id, "sk": INVOICE_PREFIX + invoice.invoice_id, **_dump(invoice)}
        self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_exists(pk)")

    def get_invoice(self, tenant_id: str, invoice_id: str) -> Invoice | None:
        key = to_item({"pk": tenant_id, "sk": INVOICE_PREFIX + invoice_id})
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return _invoice(from_item(item)) if item else None

    def list_invoices(self, tenant_id: str) -> list[Invoice]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=INVOICE_PREFIX),
        )
        return sorted((_invoice(item) for item in items), key=lambda i: i.period, reverse=True)

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


def _dump(invoice: Invoice) -> dict[str, Any]:
    return invoice.model_dump(mode="json")


def _invoice(item: dict[str, Any]) -> Invoice:
    return Invoice.model_validate(attributes(item))
