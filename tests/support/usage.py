"""Usage events for tests, and delivering them to the real metering handler as SQS would."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from functions.billing import handler as billing
from functions.metering import handler as metering
from local.fake_zibal import FakeZibal
from local.lambda_runtime import LocalLambdaContext, sqs_event
from shared.models import UsageEvent, UsageKind
from tests.support.aws import sent_emails
from tests.support.harness import Harness

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:docuchat-test-usage"
MORNING = datetime(2030, 11, 20, 6, 0, tzinfo=UTC)  # 09:30 in Tehran: the 20th
_message_ids = itertools.count()


def event(tenant_id: str, n: int, tokens: int = 10, at: datetime = MORNING, model: str = "gpt-4o-mini") -> UsageEvent:
    return UsageEvent(
        event_id=f"e{tenant_id}{n:08d}",
        tenant_id=tenant_id,
        key_id="k0123456789",
        kind=UsageKind.CHAT,
        model=model,
        input_tokens=tokens,
        output_tokens=tokens // 2,
        occurred_at=at,
    )


def deliver(bodies: list[str]) -> tuple[list[str], list[str]]:
    """One Lambda invocation with a batch (fresh SQS message ids); returns (message ids, failed message ids)."""
    ids = [f"m{next(_message_ids)}" for _ in bodies]
    messages = [{"MessageId": i, "ReceiptHandle": f"r-{i}", "Body": b} for i, b in zip(ids, bodies, strict=True)]
    response = metering.handler(sqs_event(messages, QUEUE_ARN), LocalLambdaContext("metering"))
    return ids, [f["itemIdentifier"] for f in response["batchItemFailures"]]


def deliver_until_done(bodies: list[str], rounds: int = 20) -> None:
    """What SQS does: deliver, then deliver again what the response named, until nothing fails."""
    pending = bodies
    for _ in range(rounds):
        ids, failed = deliver(pending)
        pending = [body for i, body in zip(ids, pending, strict=True) if i in failed]
        if not pending:
            return
    raise AssertionError(f"{len(pending)} records still failing after {rounds} deliveries")


def totals(
    harness: Harness, tenant_id: str, start: date = date(2030, 11, 1), end: date = date(2030, 12, 31)
) -> tuple[int, int]:
    """(events, tokens) counted for a tenant."""
    counters = harness.container.usage.counters_for_tenant(tenant_id, start, end)
    return sum(c.events for c in counters), sum(c.total_tokens for c in counters)


DAY = date(2030, 11, 20)  # MORNING's day in Tehran


def requests(zibal: FakeZibal) -> list[dict[str, Any]]:
    """Payment requests Zibal accepted (an injected failure is recorded but creates nothing)."""
    return [body for path, body in zibal.calls if path == "/v1/request"]


def emails_to(address: str) -> list[Any]:
    return [m for m in sent_emails() if address in m.destinations["ToAddresses"]]


def bill(day: date = DAY) -> dict[str, Any]:
    return billing.handler({"source": "docuchat.admin", "date": day.isoformat()}, LocalLambdaContext("billing"))


def metered(tenant_id: str, count: int, tokens: int = 4000, start: int = 0) -> int:
    """Meter `count` events of MORNING; returns their tokens (each event is 1.5 x tokens)."""
    deliver_until_done([event(tenant_id, start + n, tokens=tokens).model_dump_json() for n in range(count)])
    return count * (tokens + tokens // 2)
