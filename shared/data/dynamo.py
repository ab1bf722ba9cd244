"""Small helpers over the low-level DynamoDB client: item (de)serialisation, paging, errors."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from shared.data.aws import error_code

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    """A plain dict to a DynamoDB item; None values are left out (DynamoDB has no use for them)."""
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    values = {k: _deserializer.deserialize(v) for k, v in item.items()}
    # DynamoDB numbers come back as Decimal; every number we store is an integer.
    return {k: int(v) if type(v).__name__ == "Decimal" else v for k, v in values.items()}


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
