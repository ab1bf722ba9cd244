"""Usage counters and event claims (usage table: pk = tenant id).

A counter item per tenant, billing day and model holds the token sums. Each metered event leaves a
claim item, written in the same transaction as the counter update, so an event is counted at most once.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import cancellation_codes, query_all, to_item, values
from shared.models import UsageCounter, UsageEvent

COUNTER_PREFIX = "usage#"
CLAIM_PREFIX = "event#"


def _counter_sk(day: date, model: str) -> str:
    return f"{COUNTER_PREFIX}{day.isoformat()}#{model}"


class UsageRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def record(self, event: UsageEvent, day: date, claim_expires_at: datetime) -> bool:
        """Add the event to its day's counter; False when the event was counted before."""
        claim = {
            "pk": event.tenant_id,
            "sk": CLAIM_PREFIX + event.event_id,
            "model": event.model,
            "billing_day": day.isoformat(),  # not "day": that would put claims in the by_day index
            "expires_at": int(claim_expires_at.timestamp()),
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": to_item(claim),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": self._table,
                            "Key": to_item({"pk": event.tenant_id, "sk": _counter_sk(day, event.model)}),
                            "UpdateExpression": "SET #day = :day, model = :model "
                            "ADD input_tokens :input, output_tokens :output, events :one",
                            "ExpressionAttributeNames": {"#day": "day"},
                            "ExpressionAttributeValues": values(
                                day=day.isoformat(),
                                model=event.model,
                                input=event.input_tokens,
                                output=event.output_tokens,
                                one=1,
                            ),
                        }
                    },
                ]
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "TransactionCanceledException":
                codes = cancellation_codes(error)
                if codes and codes[0] == "ConditionalCheckFailed":
                    return False
            raise
        return True

    def counters_for_tenant(self, tenant_id: str, start: date, end: date) -> list[UsageCounter]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=values(
                tenant=tenant_id,
                low=f"{COUNTER_PREFIX}{start.isoformat()}",
                high=f"{COUNTER_PREFIX}{end.isoformat()}#\uffff",
            ),
        )
        return [_counter(item) for item in items]

    def counters_for_day(self, day: date) -> list[UsageCounter]:
        items = query_all(
            self._db,
            TableName=self._table,
            IndexName="by_day",
            KeyConditionExpression="#day = :day",
            ExpressionAttributeNames={"#day": "day"},
            ExpressionAttributeValues=values(day=day.isoformat()),
        )
        return [_counter(item) for item in items]


def _counter(item: dict[str, Any]) -> UsageCounter:
    return UsageCounter(
        tenant_id=item["pk"],
        day=item["day"],
        model=item["model"],
        input_tokens=item.get("input_tokens", 0),
        output_tokens=item.get("output_tokens", 0),
        events=item.get("events", 0),
    )
