"""Conversations and their messages (conversations table: pk = tenant id, items expire by TTL)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.chat.cache import CacheEntry
from shared.data.cache import cache_item
from shared.data.dynamo import Page, batch_write, from_item, query_all, query_page, to_item, values
from shared.models import Conversation, Message
from shared.resources import RECENT_CONVERSATIONS

HEADER_PREFIX = "conv#"
MESSAGE_PREFIX = "msg#"


class ConversationRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def append(
        self,
        conversation: Conversation,
        new_messages: list[Message],
        expires_at: datetime,
        cache_entry: CacheEntry | None = None,
    ) -> None:
        """Save the conversation header and its new messages in one batch write, with the response cache's entry
        for the answer when there is one (it lives in this table: shared/data/cache.py).

        Not a transaction: a transaction bills each item twice, and nothing needs the items to land together.
        Every write is a Put of a fixed key, so a retry writes the same items again, and a write cut short
        leaves either a header whose new messages are missing (the conversation reads as it was) or messages
        without a new header (a new conversation nobody can find, gone by TTL). Decision 19.
        """
        expiry = int(expires_at.timestamp())
        header = {
            "pk": conversation.tenant_id,
            "sk": HEADER_PREFIX + conversation.conversation_id,
            "conversation_id": conversation.conversation_id,
            "title": conversation.title,
            "created_at": conversation.created_at.isoformat(),
            "updated_at": conversation.updated_at.isoformat(),
            "expires_at": expiry,
        }
        offset = len(conversation.messages)
        writes = [{"PutRequest": {"Item": to_item(header)}}]
        for position, message in enumerate(new_messages, start=offset):
            item = {
                "pk": conversation.tenant_id,
                "sk": f"{MESSAGE_PREFIX}{conversation.conversation_id}#{position:06d}",
                **message.model_dump(mode="json"),
                "expires_at": expiry,
            }
            writes.append({"PutRequest": {"Item": to_item(item)}})
        if cache_entry is not None:
            entry = cache_item(cache_entry.tenant_id, cache_entry.key, cache_entry.fields, cache_entry.expires_at)
            writes.append({"PutRequest": {"Item": entry}})
        batch_write(self._db, self._table, writes)

    def get(self, tenant_id: str, conversation_id: str) -> Conversation | None:
        key = to_item({"pk": tenant_id, "sk": HEADER_PREFIX + conversation_id})
        header = self._db.get_item(TableName=self._table, Key=key, ConsistentRead=True).get("Item")
        if not header:
            return None
        messages = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=f"{MESSAGE_PREFIX}{conversation_id}#"),
            ConsistentRead=True,
        )
        return _conversation(tenant_id, from_item(header), [Message.model_validate(_message(m)) for m in messages])

    def page_conversations(self, tenant_id: str, limit: int, cursor: str | None = None) -> Page[Conversation]:
        """Most recently updated first, from the `recent` index (only headers carry `updated_at`)."""
        headers, next_cursor = query_page(
            self._db,
            listing="conversations",
            fixed={"pk": tenant_id},
            cursor_keys=("sk", "updated_at"),
            limit=limit,
            cursor=cursor,
            TableName=self._table,
            IndexName=RECENT_CONVERSATIONS.name,
            KeyConditionExpression="pk = :tenant",
            ExpressionAttributeValues=values(tenant=tenant_id),
            ScanIndexForward=False,
        )
        return Page([_conversation(tenant_id, header, []) for header in headers], next_cursor)

    def delete(self, tenant_id: str, conversation_id: str) -> bool:
        """Delete a conversation and its messages; False when there was no such conversation."""
        message_keys = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=f"{MESSAGE_PREFIX}{conversation_id}#"),
            ProjectionExpression="pk, sk",
        )
        batch_write(self._db, self._table, [{"DeleteRequest": {"Key": to_item(key)}} for key in message_keys])
        response = self._db.delete_item(
            TableName=self._table,
            Key=to_item({"pk": tenant_id, "sk": HEADER_PREFIX + conversation_id}),
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in response


def _message(item: dict[str, Any]) -> dict[str, Any]:
    return {k: item[k] for k in ("role", "content", "created_at")}


def _conversation(tenant_id: str, header: dict[str, Any], messages: list[Message]) -> Conversation:
    return Conversation(
        tenant_id=tenant_id,
        conversation_id=header["conversation_id"],
        title=header["title"],
        created_at=header["created_at"],
        updated_at=header["updated_at"],
        messages=tuple(messages),
    )
