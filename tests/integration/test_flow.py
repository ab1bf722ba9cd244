"""The walking skeleton end to end, in-process: tenant, key, document, chat, usage, billing, invoice."""

from __future__ import annotations

from datetime import timedelta

from local.fake_zibal import FakeZibal
from shared.billing import invoice_id_for
from shared.metering import billing_day
from tests.support.aws import sent_emails
from tests.support.harness import Harness

HANDBOOK = """# Refund policy

Customers can ask for a refund within 14 days of purchase. Refunds go back to the original card.

# Shipping

Orders ship from Tehran within two working days. Express shipping costs 90,000 Tomans."""


def test_a_question_is_answered_from_the_tenants_document_with_a_citation(harness: Harness) -> None:
    # Given a tenant with a key and an ingested document
    _, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key)
    assert created.status == 202, created
    assert created.json["status"] == "pending"
    document_id = created.json["document_id"]
    assert harness.drain("ingestion") >= 1  # the S3 notification reached the ingestion function
    document = harness.call("GET", f"/v1/documents/{document_id}", key=key)
    assert document.json["status"] == "ready", document
    assert document.json["chunk_count"] >= 1

    # When the tenant asks about it
    answer = harness.call("POST", "/v1/chat", {"message": "How many days do I have to ask for a refund?"}, key=key)

    # Then the answer quotes the document, cites it, and says which responder answered
    assert answer.status == 200, answer
    assert "14 days" in answer.json["answer"]
    assert answer.json["model"] == "docuchat-extractive"
    assert answer.json["route"] == "rag"
    citation = answer.json["citations"][0]
    assert citation["document_id"] == document_id
    assert citation["title"] == "Handbook"
    assert "refund" in citation["snippet"].lower()
    assert (
        answer.json["usage"]["total_tokens"]
        == answer.json["usage"]["input_tokens"] + answer.json["usage"]["output_tokens"]
    )


def test_usage_is_metered_and_billed_into_one_invoice_with_a_payment_link_and_an_email(
    harness: Harness, zibal: FakeZibal, clock
) -> None:
    # Given a tenant who chatted enough to owe more than Zibal's minimum
    tenant_id, key = harness.new_tenant(email="billing@acme.test")
    harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK * 40}, key=key)
    harness.drain("ingestion")
    day = billing_day(clock(), "Asia/Tehran")
    period = {"start": day.isoformat(), "end": day.isoformat()}
    # Embedding the document is metered too
    ingestion_events = harness.queued("usage")
    assert ingestion_events >= 1
    assert harness.drain("usage") == ingestion_events
    tokens = harness.call("GET", "/v1/usage", key=key, query=period).json["total_tokens"]
    assert tokens > 0
    events = 0
    questions = ["What is the refund policy?", "How much does express shipping cost?"] * 8
    for question in questions:
        reply = harness.call("POST", "/v1/chat", {"message": question}, key=key)
        assert reply.status == 200, reply
        assert reply.json["route"] == "rag", reply
        tokens += reply.json["usage"]["total_tokens"] + reply.json["usage"]["embedding_tokens"]
        events += 2  # the question's embedding and the answer, each its own event
    assert tokens * 20 // 1000 * 10 > 1_000, "the test needs usage above Zibal's 1,000 Rial minimum"
    assert harness.queued("usage") == events  # sent before answering

    # When metering runs, then the counters hold exactly those tokens
    assert harness.drain("usage") == events
    usage = harness.call("GET", "/v1/usage", key=key, query=period)
    assert usage.status == 200, usage
    assert usage.json["total_tokens"] == tokens
    assert sum(d["events"] for d in usage.json["days"]) == ingestion_events + events

    # When the nightly schedule fires the next day
    clock.advance(days=1)
    run = harness.run_schedule()

    # Then one invoice is priced at 20 Tomans per 1,000 tokens, with a Zibal link, emailed once
    assert run["status"] == "succeeded", run
    assert run["invoices_created"] == 1
    invoice_id = invoice_id_for(tenant_id, day)
    invoice = harness.call("GET", f"/v1/invoices/{invoice_id}", key=key)
    assert invoice.status == 200, invoice
    body = invoice.json["invoice"]
    expected_tomans = sum(-(-d["total_tokens"] * 20 // 1000) for d in usage.json["days"])  # rounded up per line
    assert body["total_tokens"] == tokens
    assert body["amount_tomans"] == expected_tomans
    assert invoice.json["amount_rials"] == expected_tomans * 10
    requests = [call for call in zibal.calls if call[0] == "/v1/request"]
    assert len(requests) == 1
    assert requests[0][1]["amount"] == expected_tomans * 10
    assert requests[0][1]["orderId"] == invoice_id
    assert body["payment_url"].endswith(f"/start/{body['payment_track_id']}")
    emails = [m for m in sent_emails() if "billing@acme.test" in m.destinations["ToAddresses"]]
    assert len(emails) == 1
    assert body["payment_url"] in emails[0].body

    # And running the same day again from the admin API changes nothing
    clock.advance(minutes=5)
    again = harness.admin("POST", "/v1/admin/billing/run", {"date": day.isoformat()})
    assert again.status == 200, again
    assert again.json["invoices_created"] == 0 and again.json["invoices_existing"] == 1
    assert len([call for call in zibal.calls if call[0] == "/v1/request"]) == 1
    assert len([m for m in sent_emails() if "billing@acme.test" in m.destinations["ToAddresses"]]) == 1
    runs = harness.admin("GET", "/v1/admin/billing/runs")
    assert [r["trigger"] for r in runs.json["runs"]][:2] == ["admin", "schedule"]


def test_a_redelivered_usage_event_is_counted_once(harness: Harness, clock) -> None:
    # Given one answered chat whose usage event SQS delivers twice
    _, key = harness.new_tenant()
    harness.call(
        "POST",
        "/v1/chat",
        {"message": "tell me something new", "use_documents": False},
        key=key,
        headers={"Idempotency-Key": "r-1"},
    )
    harness.call(
        "POST",
        "/v1/chat",
        {"message": "tell me something new", "use_documents": False},
        key=key,
        headers={"Idempotency-Key": "r-1"},
    )
    assert harness.queued("usage") == 2

    # When metering consumes both
    harness.drain("usage")

    # Then the day counts one event
    day = billing_day(clock(), "Asia/Tehran")
    usage = harness.call("GET", "/v1/usage", key=key, query={"start": str(day), "end": str(day + timedelta(days=1))})
    assert usage.json["days"][0]["events"] == 1


def test_tenants_cannot_see_each_others_documents_or_conversations(harness: Harness) -> None:
    # Given two tenants, one with a document and a conversation
    _, key_a = harness.new_tenant("A", "a@a.test")
    _, key_b = harness.new_tenant("B", "b@b.test")
    document = harness.call("POST", "/v1/documents", {"title": "Secret", "text": "The vault code is 7741."}, key=key_a)
    harness.drain("ingestion")
    chat = harness.call("POST", "/v1/chat", {"message": "vault code?"}, key=key_a)
    assert "7741" in chat.json["answer"]

    # When the other tenant looks for them, then it finds nothing
    assert harness.call("GET", f"/v1/documents/{document.json['document_id']}", key=key_b).status == 404
    assert harness.call("GET", f"/v1/conversations/{chat.json['conversation_id']}", key=key_b).status == 404
    other = harness.call("POST", "/v1/chat", {"message": "vault code?"}, key=key_b)
    assert "7741" not in other.json["answer"] and other.json["citations"] == []


def test_conversations_keep_their_history_and_can_be_deleted(harness: Harness) -> None:
    _, key = harness.new_tenant()
    first = harness.call("POST", "/v1/chat", {"message": "hello there", "use_documents": False}, key=key)
    conversation_id = first.json["conversation_id"]
    second = harness.call("POST", "/v1/chat", {"message": "and again", "conversation_id": conversation_id}, key=key)
    assert second.json["conversation_id"] == conversation_id

    stored = harness.call("GET", f"/v1/conversations/{conversation_id}", key=key)
    assert [m["role"] for m in stored.json["messages"]] == ["user", "assistant", "user", "assistant"]
    assert len(harness.call("GET", "/v1/conversations", key=key).json["conversations"]) == 1

    assert harness.call("DELETE", f"/v1/conversations/{conversation_id}", key=key).status == 204
    assert harness.call("GET", f"/v1/conversations/{conversation_id}", key=key).status == 404


def test_an_invoice_below_zibals_minimum_records_why_and_sends_no_link(
    harness: Harness, zibal: FakeZibal, clock
) -> None:
    # Given one short chat: a few Tomans, under the 1,000 Rial minimum
    tenant_id, key = harness.new_tenant()
    harness.call("POST", "/v1/chat", {"message": "tell me something new", "use_documents": False}, key=key)
    harness.drain("usage")

    # When billing closes the day
    day = billing_day(clock(), "Asia/Tehran")
    run = harness.admin("POST", "/v1/admin/billing/run", {"date": day.isoformat()})

    # Then the invoice exists, unpaid, with the reason, and Zibal was never asked
    assert run.json["invoices_created"] == 1, run
    invoice = harness.call("GET", f"/v1/invoices/{invoice_id_for(tenant_id, day)}", key=key).json["invoice"]
    assert invoice["status"] == "payment_failed" and "minimum" in invoice["payment_error"]
    assert invoice["payment_url"] is None
    assert zibal.calls == []


def test_a_reused_idempotency_key_does_not_make_other_questions_free(harness: Harness, clock) -> None:
    # Given a client that sends the same Idempotency-Key with every request
    _, key = harness.new_tenant()
    for message in ("first question", "second question", "first question"):
        body = {"message": message, "use_documents": False}
        harness.call("POST", "/v1/chat", body, key=key, headers={"Idempotency-Key": "always-the-same"})

    # When metering runs, then each distinct question is metered once; the exact retry is not
    harness.drain("usage")
    day = billing_day(clock(), "Asia/Tehran")
    usage = harness.call("GET", "/v1/usage", key=key, query={"start": str(day), "end": str(day)})
    assert usage.json["days"][0]["events"] == 2
