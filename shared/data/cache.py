"""The response cache's entries (conversations table: pk = tenant id, sk = cache#<key>, removed by TTL).

A new answer's entry is written with its conversation's turn, in the same batch (shared/data/conversations.py):
one call, not two.
"""

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


def cache_item(tenant_id: str, key: str, entry: dict[str, Any], expires_at: datetime) -> dict[str, Any]:
    """A cache entry as the conversations table stores it."""
    return to_item({"pk": tenant_id, "sk": CACHE_PREFIX + key, **entry, "expires_at": int(expires_at.timestamp())})
