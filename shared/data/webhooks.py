"""A tenant's webhook (tenants table, sk = webhook), its deliveries (conversations table, sk = whd#<event id>,
kept 30 days) and the queue deliveries go through."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from shared.data.dynamo import Page, attributes, from_item, query_page, to_item, values
from shared.models import WebhookConfig, WebhookDelivery

WEBHOOK_SK = "webhook"
DELIVERY_PREFIX = "whd#"
DELIVERY_RETENTION = timedelta(days=30)
MAX_DELAY_SECONDS = 900  # the most SQS delays a message


class WebhookRepository:
    def __init__(self, dynamodb: Any, tenants_table: str, log_table: str) -> None:
        self._db = dynamodb
        self._tenants = tenants_table
        self._log = log_table

    def put(self, config: WebhookConfig) -> None:
        item = {"pk": config.tenant_id, "sk": WEBHOOK_SK, **config.model_dump(mode="json")}
        self._db.put_item(TableName=self._tenants, Item=to_item(item))

    def get(self, tenant_id: str) -> WebhookConfig | None:
        key = to_item({"pk": tenant_id, "sk": WEBHOOK_SK})
        item = self._db.get_item(TableName=self._tenants, Key=key, ConsistentRead=True).get("Item")
        return WebhookConfig.model_validate(attributes(from_item(item))) if item else None

    def delete(self, tenant_id: str) -> bool:
        response = self._db.delete_item(
            TableName=self._tenants, Key=to_item({"pk": tenant_id, "sk": WEBHOOK_SK}), ReturnValues="ALL_OLD"
        )
        return "Attributes" in response

    def record(self, delivery: WebhookDelivery, now: datetime) -> None:
        """The delivery as it stands after an attempt (written whole: one delivery is handled at a time)."""
        item = {
            "pk": delivery.tenant_id,
            "sk": DELIVERY_PREFIX + delivery.event_id,
            **delivery.model_dump(mode="json"),
            "expires_at": int((now + DELIVERY_RETENTION).timestamp()),
        }
        self._db.put_item(TableName=self._log, Item=to_item(item))

    def delivery(self, tenant_id: str, event_id: str) -> WebhookDelivery | None:
        key = to_item({"pk": tenant_id, "sk": DELIVERY_PREFIX + event_id})
        item = self._db.get_item(TableName=self._log, Key=key, ConsistentRead=True).get("Item")
        return _delivery(from_item(item)) if item else None

    def page(self, tenant_id: str, limit: int, cursor: str | None) -> Page[WebhookDelivery]:
        """Newest first: event ids are time-ordered."""
        items, next_cursor = query_page(
            self._db,
            listing="webhook-deliveries",
            fixed={"pk": tenant_id},
            cursor_keys=("sk",),
            limit=limit,
            cursor=cursor,
            TableName=self._log,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=DELIVERY_PREFIX),
            ScanIndexForward=False,
        )
        return Page([_delivery(item) for item in items], next_cursor)


def _delivery(item: dict[str, Any]) -> WebhookDelivery:
    values_ = attributes(item)
    values_.pop("expires_at", None)
    return WebhookDelivery.model_validate(values_)


class WebhookQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=json.dumps(message),
            DelaySeconds=max(0, min(MAX_DELAY_SECONDS, delay_seconds)),
        )
