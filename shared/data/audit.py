"""The audit trail (audit table; removed by TTL after the retention the stage sets)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.data.dynamo import Page, attributes, query_page, to_item, values
from shared.models import AuditRecord
from shared.resources import RECENT_AUDIT

NO_TENANT = "-"  # the partition of actions on no one tenant (a billing run)
LOG = "audit"


class AuditRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def add(self, record: AuditRecord, expires_at: datetime) -> None:
        item = {
            "pk": record.tenant_id or NO_TENANT,
            "sk": f"{record.at.isoformat()}#{record.record_id}",
            "log": LOG,
            **record.model_dump(mode="json"),
            "expires_at": int(expires_at.timestamp()),
        }
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def page(self, tenant_id: str | None, limit: int, cursor: str | None) -> Page[AuditRecord]:
        """Newest first: one tenant's, or everyone's."""
        if tenant_id is not None:
            items, next_cursor = query_page(
                self._db,
                listing="audit-tenant",
                fixed={"pk": tenant_id},
                cursor_keys=("sk",),
                limit=limit,
                cursor=cursor,
                TableName=self._table,
                KeyConditionExpression="pk = :tenant",
                ExpressionAttributeValues=values(tenant=tenant_id),
                ScanIndexForward=False,
            )
        else:
            items, next_cursor = query_page(
                self._db,
                listing="audit",
                fixed={"log": LOG},
                cursor_keys=("pk", "sk"),
                limit=limit,
                cursor=cursor,
                TableName=self._table,
                IndexName=RECENT_AUDIT.name,
                KeyConditionExpression="#log = :log",
                ExpressionAttributeNames={"#log": "log"},
                ExpressionAttributeValues=values(log=LOG),
                ScanIndexForward=False,
            )
        return Page([_record(item) for item in items], next_cursor)


def _record(item: dict[str, Any]) -> AuditRecord:
    values_ = attributes(item)
    for name in ("log", "expires_at"):
        values_.pop(name, None)
    return AuditRecord.model_validate(values_)
