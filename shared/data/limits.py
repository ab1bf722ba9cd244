"""Rate counters and token budgets (usage table; every pk starts with the tenant id; counters expire by TTL).

Layout:
- rate     pk=<tenant>#rate#<subject>  sk=hour#<YYYYMMDDHH>   hour: the hour's requests; m<MM>: each minute's
- budget   pk=<tenant>                 sk=budget#<YYYY-MM>    committed (used + reserved), used, res_<id> (each
                                                              reservation: tokens and when it expires),
                                                              threshold_notified

A request's rate check is one UpdateItem on its hour's item: both counters move, under a condition that both are
below their limits, so concurrent instances can never let more through than the limits say. DynamoDB conditions
cannot add, so a budget keeps `committed` = used + reserved, and a reservation of n tokens is allowed while
committed <= limit - n.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from shared.data.dynamo import from_item, is_condition_failure, to_item, values

RESERVATION_PREFIX = "res_"


@dataclass(frozen=True)
class Counts:
    minute: int
    hour: int


class RateLimitReached(Exception):
    def __init__(self, counts: Counts) -> None:
        super().__init__("rate limit reached")
        self.counts = counts


class RateCounters:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def hit(
        self,
        tenant_id: str,
        subject: str,
        now: datetime,
        per_minute: int | None,
        per_hour: int | None,
        expires_at: datetime,
    ) -> Counts:
        """Count one request, unless that would pass a limit (RateLimitReached, nothing counted)."""
        minute = f"m{now.minute:02d}"
        conditions, params = [], {"one": 1, "expires": int(expires_at.timestamp())}
        if per_minute is not None:
            conditions.append("(attribute_not_exists(#minute) OR #minute < :per_minute)")
            params["per_minute"] = per_minute
        if per_hour is not None:
            conditions.append("(attribute_not_exists(#hour) OR #hour < :per_hour)")
            params["per_hour"] = per_hour
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": f"{tenant_id}#rate#{subject}", "sk": f"hour#{now:%Y%m%d%H}"}),
            "UpdateExpression": "ADD #hour :one, #minute :one SET expires_at = :expires",
            "ExpressionAttributeNames": {"#hour": "hour", "#minute": minute},
            "ExpressionAttributeValues": values(**params),
            "ReturnValues": "UPDATED_NEW",
        }
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        try:
            updated = from_item(self._db.update_item(**request).get("Attributes", {}))
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            old = from_item(error.response.get("Item") or {})
            raise RateLimitReached(Counts(minute=int(old.get(minute, 0)), hour=int(old.get("hour", 0)))) from error
        return Counts(minute=int(updated.get(minute, 0)), hour=int(updated.get("hour", 0)))


class BudgetSpent(Exception):
    pass


@dataclass(frozen=True)
class BudgetState:
    used: int
    committed: int
    reservations: dict[str, tuple[int, int]]  # id -> (tokens, expires at, epoch seconds)
    threshold_notified: bool


class BudgetStore:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def _key(self, tenant_id: str, period: str) -> dict[str, Any]:
        return to_item({"pk": tenant_id, "sk": f"budget#{period}"})

    def reserve(self, tenant_id: str, period: str, reservation_id: str, tokens: int, limit: int, expires: int) -> int:
        """Hold `tokens` while committed stays within `limit`; returns committed after. BudgetSpent if not."""
        if tokens > limit:  # more than the whole budget (the condition below passes on a month's first call)
            raise BudgetSpent
        try:
            updated = self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id, period),
                UpdateExpression="ADD committed :tokens SET #reservation = :entry",
                ConditionExpression="attribute_not_exists(committed) OR committed <= :most",
                ExpressionAttributeNames={"#reservation": RESERVATION_PREFIX + reservation_id},
                ExpressionAttributeValues=values(tokens=tokens, most=limit - tokens, entry=[tokens, expires]),
                ReturnValues="UPDATED_NEW",
            )
        except ClientError as error:
            if is_condition_failure(error):
                raise BudgetSpent from error
            raise
        return int(from_item(updated["Attributes"])["committed"])

    def settle(self, tenant_id: str, period: str, reservation_id: str | None, reserved: int, actual: int) -> int:
        """Replace a reservation by what was really used (or, with no reservation, add it); returns used after.

        A reservation already released (it had expired) is not released again: its tokens just count as used.
        """
        if reservation_id is not None:
            try:
                return self._update_used(
                    tenant_id,
                    period,
                    "ADD committed :delta, used :actual REMOVE #reservation",
                    "attribute_exists(#reservation)",
                    {"#reservation": RESERVATION_PREFIX + reservation_id},
                    delta=actual - reserved,
                    actual=actual,
                )
            except ClientError as error:
                if not is_condition_failure(error):
                    raise
        return self._update_used(tenant_id, period, "ADD committed :actual, used :actual", None, None, actual=actual)

    def _update_used(
        self,
        tenant_id: str,
        period: str,
        expression: str,
        condition: str | None,
        names: dict[str, str] | None,
        **params: int,
    ) -> int:
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key(tenant_id, period),
            "UpdateExpression": expression,
            "ExpressionAttributeValues": values(**params),
            "ReturnValues": "UPDATED_NEW",
        }
        if condition:
            request["ConditionExpression"] = condition
        if names:
            request["ExpressionAttributeNames"] = names
        return int(from_item(self._db.update_item(**request)["Attributes"]).get("used", 0))

    def release(self, tenant_id: str, period: str, reservation_id: str, tokens: int) -> bool:
        """Give an abandoned reservation back; False when it was settled or released already."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id, period),
                UpdateExpression="ADD committed :back REMOVE #reservation",
                ConditionExpression="attribute_exists(#reservation)",
                ExpressionAttributeNames={"#reservation": RESERVATION_PREFIX + reservation_id},
                ExpressionAttributeValues=values(back=-tokens),
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True

    def state(self, tenant_id: str, period: str) -> BudgetState:
        item = self._db.get_item(TableName=self._table, Key=self._key(tenant_id, period), ConsistentRead=True)
        values_ = from_item(item.get("Item") or {})
        reservations = {
            name[len(RESERVATION_PREFIX) :]: (int(entry[0]), int(entry[1]))
            for name, entry in values_.items()
            if name.startswith(RESERVATION_PREFIX)
        }
        return BudgetState(
            used=int(values_.get("used", 0)),
            committed=int(values_.get("committed", 0)),
            reservations=reservations,
            threshold_notified=bool(values_.get("threshold_notified", False)),
        )

    def mark_threshold_notified(self, tenant_id: str, period: str) -> bool:
        """True for the one caller that marks it first in the period: it sends the notification."""
        try:
            self._db.update_item(
                TableName=self._table,
                Key=self._key(tenant_id, period),
                UpdateExpression="SET threshold_notified = :yes",
                ConditionExpression="attribute_not_exists(threshold_notified)",
                ExpressionAttributeValues=values(yes=True),
            )
        except ClientError as error:
            if is_condition_failure(error):
                return False
            raise
        return True
