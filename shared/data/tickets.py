"""Tickets (conversations table: pk = tenant id, sk = ticket#<id>; kept, not expired)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import Page, attributes, from_item, is_condition_failure, query_page, to_item, values
from shared.errors import NotFound
from shared.models import Ticket, TicketStatus

TICKET_PREFIX = "ticket#"


class TicketRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def put(self, ticket: Ticket) -> None:
        item = {"pk": ticket.tenant_id, "sk": TICKET_PREFIX + ticket.ticket_id, **ticket.model_dump(mode="json")}
        self._db.put_item(TableName=self._table, Item=to_item(item))

    def get(self, tenant_id: str, ticket_id: str) -> Ticket | None:
        key = to_item({"pk": tenant_id, "sk": TICKET_PREFIX + ticket_id})
        item = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        return Ticket.model_validate(attributes(from_item(item))) if item else None

    def set_status(self, tenant_id: str, ticket_id: str, status: TicketStatus, now: datetime) -> Ticket:
        try:
            updated = self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": TICKET_PREFIX + ticket_id}),
                UpdateExpression="SET #status = :status, updated_at = :now",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values(status=status.value, now=now.isoformat()),
                ReturnValues="ALL_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise NotFound(f"ticket {ticket_id} not found") from error
            raise
        return Ticket.model_validate(attributes(from_item(updated["Attributes"])))

    def page(self, tenant_id: str, limit: int, cursor: str | None) -> Page[Ticket]:
        """Newest first (ticket ids are time-ordered)."""
        items, next_cursor = query_page(
            self._db,
            listing="tickets",
            fixed={"pk": tenant_id},
            cursor_keys=("sk",),
            limit=limit,
            cursor=cursor,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=TICKET_PREFIX),
            ScanIndexForward=False,
        )
        return Page([Ticket.model_validate(attributes(item)) for item in items], next_cursor)
