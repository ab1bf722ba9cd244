"""Lists that grow: documents, conversations, invoices and tenants come a page at a time, with an opaque cursor."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.data.documents import DocumentRepository
from shared.ids import new_id
from shared.metering import billing_day
from shared.models import Document
from tests.conftest import FrozenClock
from tests.support.harness import Harness, Response


def walk(harness: Harness, path: str, field: str, key: str | None, limit: int) -> list[list[dict[str, Any]]]:
    """Every page of a list, following next_cursor until it is null."""
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        query = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        reply = harness.call("GET", path, key=key, query=query) if key else harness.admin("GET", path, query=query)
        assert reply.status == 200, reply
        pages.append(reply.json[field])
        cursor = reply.json["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor never ended"


def add_documents(harness: Harness, tenant_id: str, count: int) -> list[str]:
    """Documents written straight to the table (ingestion is not what this is about); ids in creation order."""
    repository = DocumentRepository(harness.container.aws.dynamodb, harness.container.settings.documents_table)
    now = harness.container.clock()
    ids = []
    for n in range(count):
        document_id = new_id("d")
        at = now + timedelta(milliseconds=n)
        repository.put(
            Document(
                tenant_id=tenant_id,
                document_id=document_id,
                title=f"Document {n}",
                content_type="text/plain",
                source_key=f"tenants/{tenant_id}/documents/{document_id}/source",
                created_at=at,
                updated_at=at,
            )
        )
        ids.append(document_id)
    return ids


def test_documents_page_newest_first_and_every_one_comes_once(any_harness: Harness) -> None:
    # Given a tenant with 23 documents (and another tenant with some of its own)
    tenant_id, key = any_harness.new_tenant()
    other_id, _ = any_harness.new_tenant("Other")
    created = add_documents(any_harness, tenant_id, 23)
    add_documents(any_harness, other_id, 5)

    # When they are listed 10 at a time
    pages = walk(any_harness, "/v1/documents", "documents", key, limit=10)

    # Then three pages come, the last one short, newest first, each document once and none of the other tenant's
    assert [len(page) for page in pages] == [10, 10, 3]
    assert [d["document_id"] for page in pages for d in page] == list(reversed(created))


def test_conversations_page_by_last_activity(harness: Harness, clock: FrozenClock) -> None:
    # Given three conversations, the oldest one continued last
    _, key = harness.new_tenant()
    ids = []
    for question in ("first", "second", "third"):
        reply = harness.call("POST", "/v1/chat", {"message": question, "use_documents": False}, key=key)
        ids.append(reply.json["conversation_id"])
        clock.advance(minutes=1)
    harness.call("POST", "/v1/chat", {"message": "more", "conversation_id": ids[0], "use_documents": False}, key=key)

    # When they are listed two at a time
    pages = walk(harness, "/v1/conversations", "conversations", key, limit=2)

    # Then the one continued last comes first
    assert [c["conversation_id"] for page in pages for c in page] == [ids[0], ids[2], ids[1]]
    assert [len(page) for page in pages] == [2, 1]


def test_invoices_page_newest_period_first(harness: Harness, clock: FrozenClock) -> None:
    # Given a tenant billed on three days
    _, key = harness.new_tenant()
    days = []
    for _ in range(3):
        harness.call("POST", "/v1/chat", {"message": "tell me something new", "use_documents": False}, key=key)
        harness.drain("usage")
        day = billing_day(harness.container.clock(), harness.container.settings.billing_timezone)
        assert harness.admin("POST", "/v1/admin/billing/run", {"date": day.isoformat()}).status == 200
        days.append(day.isoformat())
        clock.advance(days=1)

    # When they are listed one at a time
    pages = walk(harness, "/v1/invoices", "invoices", key, limit=1)

    # Then the newest period comes first
    assert [i["invoice"]["period"] for page in pages for i in page] == list(reversed(days))


def test_the_admin_tenant_list_pages_oldest_first(any_harness: Harness) -> None:
    created = [any_harness.new_tenant(f"Tenant {n}")[0] for n in range(7)]
    pages = walk(any_harness, "/v1/admin/tenants", "tenants", None, limit=3)
    listed = [t["tenant_id"] for page in pages for t in page]
    assert listed[-7:] == created  # (DynamoDB Local keeps earlier tests' tenants of other stages apart)
    assert all(len(page) <= 3 for page in pages)


def _cursor(harness: Harness, key: str) -> str:
    reply = harness.call("GET", "/v1/documents", key=key, query={"limit": "1"})
    assert reply.json["next_cursor"], reply
    return str(reply.json["next_cursor"])


def _forged(listing: str, sk: str) -> str:
    raw = json.dumps({"l": listing, "k": {"sk": sk}}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def assert_invalid_cursor(reply: Response) -> None:
    assert reply.status == 400 and reply.json["error"]["code"] == "invalid_request", reply
    assert "cursor" in reply.json["error"]["message"]


@pytest.mark.parametrize(
    "cursor",
    ["not-base64-at-all!", base64.urlsafe_b64encode(b"[1, 2]").decode(), _forged("invoices", "doc#d1"), "e30"],
)
def test_a_cursor_that_is_not_one_is_a_400(any_harness: Harness, cursor: str) -> None:
    tenant_id, key = any_harness.new_tenant()
    add_documents(any_harness, tenant_id, 2)
    assert_invalid_cursor(any_harness.call("GET", "/v1/documents", key=key, query={"cursor": cursor}))


def test_a_cursor_never_reaches_another_tenant(any_harness: Harness) -> None:
    # Given tenant A's cursor, and tenant B with documents of its own
    a_id, a_key = any_harness.new_tenant("A")
    b_id, b_key = any_harness.new_tenant("B")
    add_documents(any_harness, a_id, 3)
    b_documents = add_documents(any_harness, b_id, 3)
    cursor = _cursor(any_harness, a_key)

    # When B presents A's cursor, or one forged to point into A's keys
    replies = [
        any_harness.call("GET", "/v1/documents", key=b_key, query={"cursor": c})
        for c in (cursor, _forged("documents", "doc#zzz"), _forged("documents", "chunk#x"))
    ]

    # Then B sees only its own documents, or a 400: the partition always comes from B's key
    for reply in replies:
        if reply.status == 200:
            assert {d["document_id"] for d in reply.json["documents"]} <= set(b_documents), reply
        else:
            assert_invalid_cursor(reply)


@pytest.mark.parametrize("limit", ["0", "201", "-1", "many"])
def test_a_limit_out_of_range_is_refused(harness: Harness, limit: str) -> None:
    _, key = harness.new_tenant()
    reply = harness.call("GET", "/v1/documents", key=key, query={"limit": limit})
    assert reply.status == 422 and reply.json["error"]["code"] == "validation_failed", reply
