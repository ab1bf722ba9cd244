"""Usage: event claims, counters and day-closed markers (usage table; every pk starts with the tenant id).

Layout:
- claim    pk=<tenant>#claims#<shard>  sk=event#<event day>#<event id>   one per metered event, with its tokens
- counter  pk=<tenant>                 sk=usage#<day>#<model>#<shard>     token sums of a billing day
- late     pk=<tenant>                 sk=late#<invoice day>#<event day>#<model>#<shard>
- closed   pk=<tenant>                 sk=closed#<day>                    written by billing before it reads a day

One transaction per (tenant, day, model) group of a batch carries every event's claim, one counter
update, and a check that the day is still open. A claim that exists cancels the transaction: that event
is a duplicate, so it is dropped and the rest retried. A closed day sends the group to a late counter on
the next open invoice day instead. Counters and claims are spread over shards so that one busy tenant
never concentrates its writes on one item.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.data.dynamo import cancellation_codes, is_condition_failure, query_all, to_item, values
from shared.models import LateUsage, UsageCounter, UsageEvent

COUNTER_SHARDS = 8
CLAIM_SHARDS = 8
# DynamoDB allows 100 items per transaction: the day check and the counter update take two.
MAX_EVENTS_PER_TRANSACTION = 98
MAX_ATTEMPTS = 12
CONDITION_FAILED = "ConditionalCheckFailed"
Key = TypeVar("Key", bound=tuple[Any, ...])


def _shard(text: str, shards: int) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % shards


def claim_key(tenant_id: str, event_day: date, event_id: str) -> dict[str, str]:
    return {"pk": f"{tenant_id}#claims#{_shard(event_id, CLAIM_SHARDS)}", "sk": f"event#{event_day}#{event_id}"}


def closed_key(tenant_id: str, day: date) -> dict[str, str]:
    return {"pk": tenant_id, "sk": f"closed#{day}"}


@dataclass
class GroupResult:
    counted: list[UsageEvent] = field(default_factory=list)
    duplicates: list[UsageEvent] = field(default_factory=list)
    late_invoice_day: date | None = None  # set when the event day was already billed


class UsageRepository:
    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    # --- metering ---------------------------------------------------------------------------------------

    def record_group(
        self,
        tenant_id: str,
        event_day: date,
        model: str,
        events: list[UsageEvent],
        arrival_day: date,
        claim_expires_at: datetime,
    ) -> GroupResult:
        """Count a group of one tenant's events of one day and model, each exactly once."""
        result = GroupResult()
        unique: dict[str, UsageEvent] = {}
        for event in events:  # one transaction may not touch an item twice: SQS can repeat an event in a batch
            if event.event_id in unique:
                result.duplicates.append(event)
            else:
                unique[event.event_id] = event
        ordered = list(unique.values())
        for start in range(0, len(ordered), MAX_EVENTS_PER_TRANSACTION):
            part = self._record(
                tenant_id,
                event_day,
                model,
                ordered[start : start + MAX_EVENTS_PER_TRANSACTION],
                arrival_day,
                claim_expires_at,
            )
            result.counted += part.counted
            result.duplicates += part.duplicates
            result.late_invoice_day = part.late_invoice_day or result.late_invoice_day
        return result

    def _record(
        self,
        tenant_id: str,
        event_day: date,
        model: str,
        pending: list[UsageEvent],
        arrival_day: date,
        expires: datetime,
    ) -> GroupResult:
        result = GroupResult()
        invoice_day = event_day  # where the tokens will be billed; moves on while that day is closed
        for _attempt in range(MAX_ATTEMPTS):
            if not pending:
                return result
            late = invoice_day != event_day
            try:
                self._db.transact_write_items(
                    TransactItems=self._group_items(tenant_id, event_day, invoice_day, model, pending, late, expires)
                )
            except ClientError as error:
                if error_code(error) != "TransactionCanceledException":
                    raise
                codes = cancellation_codes(error)
                claim_codes = codes[1 : 1 + len(pending)]
                duplicates = [e for e, code in zip(pending, claim_codes, strict=False) if code == CONDITION_FAILED]
                if duplicates:
                    result.duplicates += duplicates
                    duplicate_ids = {e.event_id for e in duplicates}
                    pending = [e for e in pending if e.event_id not in duplicate_ids]
                elif codes and codes[0] == CONDITION_FAILED:
                    # The day is billed: bill the group as late usage on the first open day from its arrival.
                    invoice_day = max(invoice_day + timedelta(days=1), arrival_day)
                else:
                    raise  # conflicts or throttling: the batch's records fail and SQS delivers them again
                continue
            result.counted += pending
            result.late_invoice_day = invoice_day if late else None
            return result
        raise RuntimeError(f"could not meter {len(pending)} events of {tenant_id} after {MAX_ATTEMPTS} attempts")

    def _group_items(
        self,
        tenant_id: str,
        event_day: date,
        invoice_day: date,
        model: str,
        events: list[UsageEvent],
        late: bool,
        expires: datetime,
    ) -> list[dict[str, Any]]:
        day_is_open = {
            "ConditionCheck": {
                "TableName": self._table,
                "Key": to_item(closed_key(tenant_id, invoice_day)),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }
        claims = [
            {
                "Put": {
                    "TableName": self._table,
                    "Item": to_item(
                        {
                            **claim_key(tenant_id, event_day, e.event_id),
                            "model": model,
                            "input_tokens": e.input_tokens,
                            "output_tokens": e.output_tokens,
                            "invoice_day": invoice_day.isoformat(),
                            "expires_at": int(expires.timestamp()),
                        }
                    ),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
            for e in events
        ]
        shard = _shard(events[0].event_id, COUNTER_SHARDS)
        if late:
            sk = f"late#{invoice_day}#{event_day}#{model}#{shard:02d}"
            labels = {"invoice_day": invoice_day.isoformat(), "event_day": event_day.isoformat(), "model": model}
        else:
            sk = f"usage#{event_day}#{model}#{shard:02d}"
            labels = {"day": event_day.isoformat(), "model": model}
        assignments = ", ".join(f"#{name} = :{name}" for name in labels)
        counter = {
            "Update": {
                "TableName": self._table,
                "Key": to_item({"pk": tenant_id, "sk": sk}),
                "UpdateExpression": f"SET {assignments} ADD input_tokens :input, output_tokens :output, events :count",
                "ExpressionAttributeNames": {f"#{name}": name for name in labels},
                "ExpressionAttributeValues": values(
                    **labels,
                    input=sum(e.input_tokens for e in events),
                    output=sum(e.output_tokens for e in events),
                    count=len(events),
                ),
            }
        }
        return [day_is_open, *claims, counter]

    # --- billing ------------------------------------------------------------------------------------------

    def close_day(self, tenant_id: str, day: date, closed_at: datetime) -> None:
        """Mark a tenant's day as billed: from now on its events are metered as late usage."""
        item = {**closed_key(tenant_id, day), "closed_at": closed_at.isoformat()}
        try:
            self._db.put_item(TableName=self._table, Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if not is_condition_failure(error):
                raise  # an existing marker is fine: a re-run closes the same day again

    def is_closed(self, tenant_id: str, day: date) -> bool:
        item = self._db.get_item(TableName=self._table, Key=to_item(closed_key(tenant_id, day)), ConsistentRead=True)
        return "Item" in item

    def counters_for_day(self, tenant_id: str, day: date) -> list[UsageCounter]:
        """The day's own counters, without late usage (strongly consistent)."""
        return _counters(tenant_id, self._query(tenant_id, f"usage#{day}#", consistent=True))

    def billable(self, tenant_id: str, day: date) -> tuple[list[UsageCounter], list[LateUsage]]:
        """A closed day's counters and the late usage that lands on its invoice (strongly consistent)."""
        late = self._query(tenant_id, f"late#{day}#", consistent=True)
        return self.counters_for_day(tenant_id, day), _late(tenant_id, late)

    # --- reading ------------------------------------------------------------------------------------------

    def counters_for_tenant(self, tenant_id: str, start: date, end: date) -> list[UsageCounter]:
        """Tokens per event day and model, late usage included, from `start` to `end`."""
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=values(tenant=tenant_id, low=f"usage#{start}", high=f"usage#{end}#\uffff"),
        )
        counters = _counters(tenant_id, list(items))
        late = [
            UsageCounter(
                tenant_id=tenant_id,
                day=entry.event_day,
                model=entry.model,
                input_tokens=entry.input_tokens,
                output_tokens=entry.output_tokens,
                events=entry.events,
            )
            for entry in self.late_usage(tenant_id)
            if start <= entry.event_day <= end
        ]
        return _merge(counters + late)

    def late_usage(self, tenant_id: str) -> list[LateUsage]:
        return _late(tenant_id, self._query(tenant_id, "late#", consistent=False))

    def claims_for_day(self, tenant_id: str, event_day: date) -> list[dict[str, Any]]:
        """Every counted event of a tenant's day, read from the claims: the ledger reconciliation trusts."""
        claims: list[dict[str, Any]] = []
        for shard in range(CLAIM_SHARDS):
            claims += query_all(
                self._db,
                TableName=self._table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=values(pk=f"{tenant_id}#claims#{shard}", prefix=f"event#{event_day}#"),
                ConsistentRead=True,
            )
        return claims

    def _query(self, tenant_id: str, prefix: str, consistent: bool) -> list[dict[str, Any]]:
        return list(
            query_all(
                self._db,
                TableName=self._table,
                KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=values(tenant=tenant_id, prefix=prefix),
                ConsistentRead=consistent,
            )
        )


def _counters(tenant_id: str, items: list[dict[str, Any]]) -> list[UsageCounter]:
    return _merge(
        [
            UsageCounter(
                tenant_id=tenant_id,
                day=item["day"],
                model=item["model"],
                input_tokens=item.get("input_tokens", 0),
                output_tokens=item.get("output_tokens", 0),
                events=item.get("events", 0),
            )
            for item in items
        ]
    )


def _sum_tokens(rows: Iterable[tuple[Key, int, int, int]]) -> list[tuple[Key, int, int, int]]:
    """(key, input, output, events) rows summed per key, in key order: shards and parts become one."""
    sums: dict[Key, list[int]] = defaultdict(lambda: [0, 0, 0])
    for key, input_tokens, output_tokens, events in rows:
        total = sums[key]
        total[0] += input_tokens
        total[1] += output_tokens
        total[2] += events
    return [(key, i, o, n) for key, (i, o, n) in sorted(sums.items())]


def _merge(counters: list[UsageCounter]) -> list[UsageCounter]:
    """Sum shards (and late parts) of the same day and model."""
    rows = (((c.day, c.model), c.input_tokens, c.output_tokens, c.events) for c in counters)
    return [
        UsageCounter(tenant_id=counters[0].tenant_id, day=day, model=model, input_tokens=i, output_tokens=o, events=n)
        for (day, model), i, o, n in _sum_tokens(rows)
    ]


def _late(tenant_id: str, items: list[dict[str, Any]]) -> list[LateUsage]:
    rows = (
        (
            (date.fromisoformat(item["invoice_day"]), date.fromisoformat(item["event_day"]), item["model"]),
            item.get("input_tokens", 0),
            item.get("output_tokens", 0),
            item.get("events", 0),
        )
        for item in items
    )
    return [
        LateUsage(
            tenant_id=tenant_id, invoice_day=inv, event_day=ev, model=model, input_tokens=i, output_tokens=o, events=n
        )
        for (inv, ev, model), i, o, n in _sum_tokens(rows)
    ]


class UsageOutbox:
    """Usage events that SQS would not take, parked until the metering function's drain counts them.

    They live under the tenant's own key (<tenant>#outbox), like every tenant item; the drain walks the
    tenants. An event is removed only after it was counted, and counting is idempotent per event id.
    """

    def __init__(self, dynamodb: Any, table: str) -> None:
        self._db = dynamodb
        self._table = table

    def park(self, event: UsageEvent, parked_at: datetime) -> None:
        item = {"pk": f"{event.tenant_id}#outbox", "sk": event.event_id, "event": event.model_dump_json()}
        self._db.put_item(TableName=self._table, Item=to_item({**item, "parked_at": parked_at.isoformat()}))

    def parked(self, tenant_id: str) -> list[UsageEvent]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues=values(pk=f"{tenant_id}#outbox"),
            ConsistentRead=True,
        )
        return [UsageEvent.model_validate_json(item["event"]) for item in items]

    def remove(self, event: UsageEvent) -> None:
        self._db.delete_item(
            TableName=self._table, Key=to_item({"pk": f"{event.tenant_id}#outbox", "sk": event.event_id})
        )
