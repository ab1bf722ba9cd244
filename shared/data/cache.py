"""The response cache's entries (conversations table: pk = tenant id, sk = cache#<key>, removed by TTL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.data.dynamo import from_item, to_item

CACHE_PREFIX = "cache#"


class ResponseCacheStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def get(self, tenant_id: str, key: str, now: datetime) -> dict[str, Any] | None:
        """The entry, unless it has expired (TTL removes items some time after their expiry, not at it)."""
        item = self._db.get_item(TableName=self._table, Key=to_item({"pk": tenant_id, "sk": CACHE_PREFIX + key}))
        entry = from_item(item["Item"]) if "Item" in item else None
        if entry is None or entry.get("expires_at", 0) <= int(now.timestamp()):
            return None
        return entry

    def put(self, tenant_id: str, key: str, entry: dict[str, Any], expires_at: datetime) -> None:
        item = {"pk": tenant_id, "sk": CACHE_PREFIX + key, **entry, "expires_at": int(expires_at.timestamp())}
        self._db.put_item(TableName=self._table, Item=to_item(item))
