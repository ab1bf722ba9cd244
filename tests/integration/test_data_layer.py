"""The data layer against both moto and DynamoDB Local, AWS's own implementation.

moto is fast and covers every service; DynamoDB Local is the reference for DynamoDB's semantics
(condition checks inside transactions, cancellation reasons, GSIs), so each test runs on both.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from local.bootstrap import create_tables
from shared.chat.cache import CacheEntry
from shared.data.aws import AwsClients
from shared.data.billing import BillingRepository
from shared.data.cache import ResponseCacheStore
from shared.data.conversations import ConversationRepository
from shared.data.documents import DocumentRepository
from shared.data.tenants import TenantRepository
from shared.data.usage import UsageRepository
from shared.errors import Conflict
from shared.models import (
    Chunk,
    Conversation,
    Invoice,
    InvoiceLine,
    Message,
    Tenant,
    UsageEvent,
    UsageKind,
)
from shared.settings import Settings

NOW = datetime(2030, 11, 20, 9, 30, tzinfo=UTC)
DAY = date(2030, 11, 20)
TENANT = "t0123456789abcdef"


@pytest.fixture(params=["moto", pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)])
def tables(request: pytest.FixtureRequest) -> tuple[Any, dict[str, str]]:
    """A DynamoDB client and freshly created tables (a new stage name per test keeps tests apart)."""
    if request.param == "moto":
        endpoint = request.getfixturevalue("moto_aws").endpoint_url
    else:
        endpoint = request.getfixturevalue("dynamodb_local").endpoint_url
    stage = "t" + uuid.uuid4().hex[:10]
    client = AwsClients(Settings(stage=stage, dynamodb_endpoint_url=endpoint)).dynamodb
    return client, create_tables(client, stage)


def event(n: int, tokens: int = 5) -> UsageEvent:
    return UsageEvent(
        event_id=f"e{n:020d}",
        tenant_id=TENANT,
        kind=UsageKind.CHAT,
        model="m1",
        input_tokens=tokens,
        output_tokens=tokens,
        occurred_at=NOW,
    )


def test_an_event_is_counted_once_and_a_refused_claim_leaves_the_counter_alone(
    tables: tuple[Any, dict[str, str]],
) -> None:
    client, env = tables
    usage = UsageRepository(client, env["DOCUCHAT_USAGE_TABLE"])
    expires = NOW + timedelta(days=100)

    # Given two events counted
    first = usage.record_group(TENANT, DAY, "m1", [event(1), event(2)], DAY, expires)
    assert len(first.counted) == 2

    # When a batch repeats one of them (twice within the batch too) beside a new one
    again = usage.record_group(TENANT, DAY, "m1", [event(1), event(1), event(3)], DAY, expires)

    # Then only the new one is counted: the duplicate's claim cancels its transaction, which is retried without it
    assert [e.event_id for e in again.counted] == [event(3).event_id]
    assert len(again.duplicates) == 2
    [counter] = usage.counters_for_tenant(TENANT, DAY, DAY)
    assert (counter.events, counter.input_tokens, counter.output_tokens) == (3, 15, 15)
    assert len(usage.claims_for_day(TENANT, DAY)) == 3


def test_usage_of_a_billed_day_becomes_late_usage_on_the_next_open_day(tables: tuple[Any, dict[str, str]]) -> None:
    client, env = tables
    usage = UsageRepository(client, env["DOCUCHAT_USAGE_TABLE"])
    expires = NOW + timedelta(days=100)
    usage.record_group(TENANT, DAY, "m1", [event(1)], DAY, expires)

    # Given the day is billed
    usage.close_day(TENANT, DAY, NOW)
    counters, late = usage.billable(TENANT, DAY)
    assert [c.events for c in counters] == [1] and late == []

    # When an event of that day arrives two days later
    result = usage.record_group(TENANT, DAY, "m1", [event(2)], DAY + timedelta(days=2), expires)

    # Then it is counted once, as late usage for the day it arrived, and the billed day is unchanged
    assert result.late_invoice_day == DAY + timedelta(days=2)
    assert usage.billable(TENANT, DAY)[0] == counters
    [late_entry] = usage.billable(TENANT, DAY + timedelta(days=2))[1]
    assert (late_entry.event_day, late_entry.events, late_entry.total_tokens) == (DAY, 1, 10)
    assert usage.record_group(TENANT, DAY, "m1", [event(2)], DAY + timedelta(days=2), expires).duplicates
    # /v1/usage shows usage by the day it happened, late or not
    assert usage.counters_for_tenant(TENANT, DAY, DAY)[0].events == 2


def test_a_tenant_id_is_taken_once(tables: tuple[Any, dict[str, str]]) -> None:
    client, env = tables
    tenants = TenantRepository(client, env["DOCUCHAT_TENANTS_TABLE"])
    tenant = Tenant(tenant_id=TENANT, name="Acme", email="a@acme.test", created_at=NOW)
    tenants.create(tenant)
    with pytest.raises(Conflict):
        tenants.create(tenant)
    assert tenants.get(TENANT) == tenant
    assert tenants.list_tenants() == [tenant]


def test_reingesting_replaces_chunks_and_never_duplicates_them(tables: tuple[Any, dict[str, str]]) -> None:
    client, env = tables
    documents = DocumentRepository(client, env["DOCUCHAT_DOCUMENTS_TABLE"])

    def chunks(count: int, version: str) -> list[Chunk]:
        return [
            Chunk(tenant_id=TENANT, document_id="d1", index=i, title="T", text=f"{version}{i}") for i in range(count)
        ]

    documents.replace_chunks(TENANT, "d1", chunks(30, "old"))
    documents.replace_chunks(TENANT, "d1", chunks(3, "new"))
    assert [c.text for c in documents.list_chunks(TENANT)] == ["new0", "new1", "new2"]


def test_an_invoice_is_created_once_per_tenant_and_period(tables: tuple[Any, dict[str, str]]) -> None:
    client, env = tables
    billing = BillingRepository(client, env["DOCUCHAT_BILLING_TABLE"])
    line = InvoiceLine(
        usage_day=DAY,
        model="m1",
        input_tokens=5,
        output_tokens=5,
        tokens=10,
        events=1,
        input_price=20,
        output_price=20,
        amount_tomans=1,
    )
    invoice = Invoice(
        invoice_id="inv-x",
        tenant_id=TENANT,
        period=DAY,
        lines=(line,),
        total_tokens=10,
        amount_tomans=1,
        created_at=NOW,
    )
    assert billing.create_invoice(invoice) is True
    assert billing.create_invoice(invoice.model_copy(update={"amount_tomans": 999})) is False
    assert billing.get_invoice(TENANT, "inv-x") == invoice
    assert billing.list_invoices(TENANT) == [invoice]


def test_a_conversation_keeps_its_messages_in_order_until_deleted(tables: tuple[Any, dict[str, str]]) -> None:
    client, env = tables
    conversations = ConversationRepository(client, env["DOCUCHAT_CONVERSATIONS_TABLE"])
    conversation = Conversation(tenant_id=TENANT, conversation_id="c1", title="hi", created_at=NOW, updated_at=NOW)
    first = [
        Message(role="user", content="q1", created_at=NOW),
        Message(role="assistant", content="a1", created_at=NOW),
    ]
    conversations.append(conversation, first, NOW + timedelta(days=30))
    stored = conversations.get(TENANT, "c1")
    assert stored is not None
    conversations.append(stored, [Message(role="user", content="q2", created_at=NOW)], NOW + timedelta(days=30))

    again = conversations.get(TENANT, "c1")
    assert again is not None and [m.content for m in again.messages] == ["q1", "a1", "q2"]
    assert conversations.get("t9999999999", "c1") is None  # another tenant's key finds nothing
    assert conversations.delete(TENANT, "c1") is True
    assert conversations.get(TENANT, "c1") is None and conversations.delete(TENANT, "c1") is False


class ThrottlingFirstBatch:
    """A DynamoDB client whose first BatchWriteItem writes one item and hands the rest back as unprocessed,
    the way DynamoDB answers a throttled batch."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.batches = 0

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        self.batches += 1
        if self.batches > 1:
            return self._client.batch_write_item(RequestItems=RequestItems)
        ((table, requests),) = RequestItems.items()
        self._client.batch_write_item(RequestItems={table: requests[:1]})
        return {"UnprocessedItems": {table: requests[1:]}}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_turn_written_in_a_throttled_batch_lands_whole_and_a_repeated_write_changes_nothing(
    tables: tuple[Any, dict[str, str]],
) -> None:
    client, env = tables
    throttled = ThrottlingFirstBatch(client)
    conversations = ConversationRepository(throttled, env["DOCUCHAT_CONVERSATIONS_TABLE"])
    conversation = Conversation(tenant_id=TENANT, conversation_id="c2", title="hi", created_at=NOW, updated_at=NOW)
    turn = [
        Message(role="user", content="q1", created_at=NOW),
        Message(role="assistant", content="a1", created_at=NOW),
    ]
    answer = CacheEntry(TENANT, "k1", {"text": "a1", "model": "m", "input_tokens": 3, "output_tokens": 2}, NOW)
    conversations.append(conversation, turn, NOW + timedelta(days=30), cache_entry=answer)
    assert throttled.batches == 2  # what came back unprocessed was written again
    conversations.append(conversation, turn, NOW + timedelta(days=30))  # a retried request writes the same keys

    stored = conversations.get(TENANT, "c2")
    assert stored is not None and [m.content for m in stored.messages] == ["q1", "a1"]
    cached = ResponseCacheStore(client, env["DOCUCHAT_CONVERSATIONS_TABLE"]).get(TENANT, "k1", NOW - timedelta(1))
    assert cached is not None and cached["text"] == "a1" and cached["output_tokens"] == 2
