"""Small helpers over the low-level DynamoDB client: item (de)serialisation, paging, errors."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.errors import InvalidInput

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()
T = TypeVar("T")
MAX_CURSOR_VALUE_CHARS = 1024


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A plain dict to a DynamoDB item; None values are left out (DynamoDB has no use for them)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(_deserializer.deserialize(v)) for k, v in item.items()}


def _plain(value: Any) -> Any:
    """DynamoDB numbers come back as Decimal, nested ones too; every number we store is an integer."""
    if isinstance(value, Decimal):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def attributes(item: dict[str, Any]) -> dict[str, Any]:
    """An item without its table keys: what a record model is built from."""
    return {k: v for k, v in item.items() if k not in ("pk", "sk")}


def values(**kwargs: Any) -> dict[str, Any]:
    """ExpressionAttributeValues from keyword arguments: values(tenant="t1") -> {":tenant": {"S": "t1"}}."""
    return {f":{k}": _serializer.serialize(v) for k, v in kwargs.items()}


def query_all(client: Any, **params: Any) -> Iterator[dict[str, Any]]:
    """Every item of a query, following LastEvaluatedKey."""
    return _all_pages(client.query, params)


def scan_all(client: Any, **params: Any) -> Iterator[dict[str, Any]]:
    return _all_pages(client.scan, params)


def _all_pages(operation: Any, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    while True:
        page = operation(**params)
        for item in page.get("Items", []):
            yield from_item(item)
        if "LastEvaluatedKey" not in page:
            return
        params = {**params, "ExclusiveStartKey": page["LastEvaluatedKey"]}


def is_condition_failure(error: ClientError) -> bool:
    return error_code(error) == "ConditionalCheckFailedException"


def cancellation_codes(error: ClientError) -> list[str]:
    """The per-item reasons of a cancelled transaction ("None" for items that were fine)."""
    return [reason.get("Code", "None") for reason in error.response.get("CancellationReasons", [])]


def batch_write(client: Any, table: str, requests: list[dict[str, Any]]) -> None:
    """BatchWriteItem in chunks of 25, retrying what DynamoDB hands back as unprocessed."""
    for start in range(0, len(requests), 25):
        pending: dict[str, Any] = {table: requests[start : start + 25]}
        for attempt in range(8):
            unprocessed = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
            if not unprocessed:
                break
            pending = unprocessed
            time.sleep(min(0.05 * 2**attempt, 2.0))  # unprocessed items mean throttling: back off
        else:
            raise RuntimeError(f"DynamoDB left {len(pending[table])} writes unprocessed after retries")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list, and the opaque cursor of the next one (None on the last page)."""

    items: list[T]
    next_cursor: str | None


def query_page(
    client: Any,
    *,
    listing: str,
    fixed: dict[str, str],
    cursor_keys: Sequence[str],
    limit: int,
    cursor: str | None,
    **params: Any,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of a query: at most `limit` items, and a cursor when more follow.

    A cursor names the listing and the key of the page's last item, without the attributes in `fixed` (the
    caller's tenant, say): those always come from the caller, so a cursor can only move within the caller's
    own partition, however it is edited. One item more than asked is read, so a cursor means there is more.
    """
    if cursor:
        params["ExclusiveStartKey"] = to_item({**decode_cursor(cursor, listing, cursor_keys), **fixed})
    try:
        response = client.query(**params, Limit=limit + 1)
    except ClientError as error:
        if cursor and error_code(error) == "ValidationException":  # a start key outside the query's range
            raise InvalidInput("cursor is not valid for this list") from error
        raise
    items = [from_item(item) for item in response.get("Items", [])]
    more = len(items) > limit or "LastEvaluatedKey" in response  # (DynamoDB also stops at 1 MB a page)
    items = items[:limit]
    if not more or not items:
        return items, None
    return items, encode_cursor(listing, {name: items[-1][name] for name in cursor_keys})


def encode_cursor(listing: str, key: dict[str, str]) -> str:
    raw = json.dumps({"l": listing, "k": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, listing: str, cursor_keys: Sequence[str]) -> dict[str, str]:
    """The key a cursor names; InvalidInput for anything that is not a cursor of this listing."""
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error) as error:
        raise InvalidInput("cursor is not valid: pass next_cursor from the previous page as it is") from error
    key = decoded.get("k") if isinstance(decoded, dict) and decoded.get("l") == listing else None
    if (
        not isinstance(key, dict)
        or set(key) != set(cursor_keys)
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_CURSOR_VALUE_CHARS for v in key.values())
    ):
        raise InvalidInput("cursor is not valid for this list: pass next_cursor from the previous page as it is")
    return key
