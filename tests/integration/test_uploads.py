"""File uploads: a presigned PUT, S3 -> SQS -> ingestion, parsed into chunks or failed with a reason."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from functions.ingestion import handler as ingestion
from local.lambda_runtime import LocalLambdaContext
from tests.conftest import FrozenClock
from tests.support.files import encrypted, pdf
from tests.support.harness import Harness


def upload(harness: Harness, key: str, title: str, body: bytes, content_type: str) -> dict[str, Any]:
    """Ask for an upload, PUT the file where the reply says, and let ingestion run; returns the document."""
    created = harness.call(
        "POST", "/v1/documents", {"title": title, "size_bytes": len(body), "content_type": content_type}, key=key
    )
    assert created.status == 202, created
    target = created.json["upload"]
    assert created.json["status"] == "pending" and target["method"] == "PUT"
    put = httpx.put(target["url"], content=body, headers=target["headers"])
    assert put.status_code == 200, put.text
    harness.drain("ingestion")
    return harness.call("GET", f"/v1/documents/{created.json['document_id']}", key=key).json


def test_an_uploaded_pdf_is_parsed_and_cited(harness: Harness) -> None:
    _, key = harness.new_tenant()
    document = upload(harness, key, "Warranty", pdf("Intro page.", "The warranty lasts 24 months."), "application/pdf")
    assert document["status"] == "ready", document
    answer = harness.call("POST", "/v1/chat", {"message": "How long is the warranty?"}, key=key).json
    assert "24 months" in answer["answer"] and answer["citations"][0]["document_id"] == document["document_id"]


def test_a_pdf_citation_names_the_page_its_passage_starts_on(harness: Harness) -> None:
    _, key = harness.new_tenant()
    pages = [f"Page {n} is about topic number {n}. " * 30 for n in range(1, 6)]
    pages[3] = "The pump's maintenance interval is 400 operating hours. " * 6
    upload(harness, key, "Pump manual", pdf(*pages), "application/pdf")
    answer = harness.call("POST", "/v1/chat", {"message": "What is the pump's maintenance interval?"}, key=key).json
    assert answer["citations"][0]["page"] == 4, answer["citations"]
    text = upload(harness, key, "Notes", b"The pump is blue.\fIt hums.", "text/plain")  # a form feed is no page
    cited = harness.call("POST", "/v1/chat", {"message": "What colour is the pump?"}, key=key).json["citations"]
    assert all(c["page"] is None for c in cited if c["document_id"] == text["document_id"])


def test_an_uploaded_html_page_keeps_only_its_visible_text(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    html = b"<html><script>steal()</script><body><h2>Hours</h2><p>Open 9 to 17.</p></body></html>"
    document = upload(harness, key, "Hours", html, "text/html")
    assert document["status"] == "ready", document
    chunks = harness.container.documents.list_chunks(tenant_id)
    assert any("Open 9 to 17." in c.text for c in chunks) and not any("steal" in c.text for c in chunks)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"%PDF-1.7\n this is not really a pdf", "application/pdf", "could not be read"),
        (b"plain words", "application/pdf", "not one"),
        (b"\xff\xfe\x00\x01", "text/plain", "UTF-8"),
        (None, "application/pdf", "encrypted"),
    ],
)
def test_unusable_uploads_end_failed_with_their_reason(
    harness: Harness, body: bytes | None, content_type: str, reason: str
) -> None:
    _, key = harness.new_tenant()
    document = upload(harness, key, "Bad", body if body is not None else encrypted(pdf("x")), content_type)
    assert document["status"] == "failed" and reason in document["reason"], document


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        # The schema states these limits, so breaking them is a 422 naming the field
        ({"title": "t", "size_bytes": 0, "content_type": "application/pdf"}, 422, "validation_failed"),
        ({"title": "t", "size_bytes": 26 * 1024 * 1024, "content_type": "application/pdf"}, 422, "validation_failed"),
        ({"title": "t", "size_bytes": 10, "content_type": "application/zip"}, 422, "validation_failed"),
        ({"title": "t", "size_bytes": 10, "text": "both", "content_type": "text/plain"}, 422, "validation_failed"),
        ({"title": "t", "content_type": "text/plain"}, 422, "validation_failed"),
    ],
)
def test_bad_upload_requests_are_refused(harness: Harness, body: dict[str, Any], status: int, code: str) -> None:
    _, key = harness.new_tenant()
    response = harness.call("POST", "/v1/documents", body, key=key)
    assert response.status == status and response.json["error"]["code"] == code, response


def test_a_poison_message_ends_in_the_dlq_and_its_document_failed(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a document whose processing always breaks (its chunks cannot be written)
    _, key = harness.new_tenant()

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("DynamoDB is on fire")

    monkeypatch.setattr(harness.container.documents, "replace_chunks", broken)
    created = harness.call("POST", "/v1/documents", {"title": "Doomed", "text": "some words"}, key=key).json

    # When SQS delivers it as often as the redrive policy allows
    for _ in range(8):
        harness.drain("ingestion", rounds=1)

    # Then the message sits in the DLQ and the document says why it failed
    sqs = harness.container.aws.sqs
    dlq = sqs.receive_message(QueueUrl=harness.env["DOCUCHAT_INGESTION_QUEUE_URL"] + "-dlq").get("Messages", [])
    assert len(dlq) == 1
    document = harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).json
    assert document["status"] == "failed" and "DynamoDB is on fire" in document["reason"]
    assert ingestion.INGESTION_QUEUE.max_receive_count == 5


def test_deleting_a_document_removes_its_chunks_file_and_citations(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Old", "text": "The vault code is 7741."}, key=key).json
    harness.drain("ingestion")
    assert "7741" in harness.call("POST", "/v1/chat", {"message": "vault code?"}, key=key).json["answer"]

    assert harness.call("DELETE", f"/v1/documents/{created['document_id']}", key=key).status == 204

    assert harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).status == 404
    assert harness.container.documents.list_chunks(tenant_id) == []
    bucket = harness.env["DOCUCHAT_DOCUMENTS_BUCKET"]
    assert harness.container.aws.s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
    assert "7741" not in harness.call("POST", "/v1/chat", {"message": "vault code?"}, key=key).json["answer"]
    assert harness.call("DELETE", f"/v1/documents/{created['document_id']}", key=key).status == 404


def test_a_document_deleted_while_it_is_processed_leaves_no_chunks(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an upload that the tenant deletes while ingestion is parsing it (after it read the document)
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Gone", "text": "words words"}, key=key).json
    documents = harness.container.documents
    write_chunks = documents.replace_chunks

    def delete_then_write(tenant: str, document_id: str, chunks: list[Any]) -> None:
        if chunks:
            harness.call("DELETE", f"/v1/documents/{document_id}", key=key)
        write_chunks(tenant, document_id, chunks)

    monkeypatch.setattr(documents, "replace_chunks", delete_then_write)

    # When ingestion finishes, then it takes its chunks back and reports nothing failed
    harness.drain("ingestion")
    assert harness.queued("ingestion") == 0  # nothing failed, nothing comes back
    assert harness.container.documents.list_chunks(tenant_id) == []
    assert harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).status == 404


def sweep(harness: Harness) -> Any:
    # The input the upload-sweep schedule passes to the ingestion function (stacks/schedule.py).
    return ingestion.handler({"source": "docuchat.upload-sweep"}, LocalLambdaContext("ingestion"))


def ask_for_upload(harness: Harness, key: str, body: bytes) -> dict[str, Any]:
    created = harness.call(
        "POST", "/v1/documents", {"title": "Late", "size_bytes": len(body), "content_type": "text/plain"}, key=key
    )
    assert created.status == 202, created
    return dict(created.json)


def test_an_upload_that_never_arrives_fails_once_its_url_has_expired(any_harness: Harness, clock: FrozenClock) -> None:
    harness = any_harness
    # Given a document waiting for a file that is never sent
    _, key = harness.new_tenant()
    document = ask_for_upload(harness, key, b"never sent")
    assert document["upload_expires_at"] == document["upload"]["expires_at"]

    # When the sweep runs while the URL is still valid, and again just after it expired: nothing changes yet
    assert sweep(harness) == {"failed": 0, "requeued": 0}
    clock.advance(seconds=harness.container.settings.upload_url_seconds + 60)
    assert sweep(harness) == {"failed": 0, "requeued": 0}

    # When it runs once the grace after expiry has passed too
    clock.advance(minutes=5)
    assert sweep(harness) == {"failed": 1, "requeued": 0}

    # Then the document is failed with the reason, and the next sweep leaves it alone
    got = harness.call("GET", f"/v1/documents/{document['document_id']}", key=key).json
    assert got["status"] == "failed" and got["reason"] == "the upload never arrived", got
    assert sweep(harness) == {"failed": 0, "requeued": 0}


def test_a_file_whose_notification_was_lost_is_ingested_by_the_sweep(harness: Harness, clock: FrozenClock) -> None:
    # Given a file that was uploaded, but whose S3 notification never reached ingestion
    _, key = harness.new_tenant()
    body = b"The late shipment arrives on Thursday."
    document = ask_for_upload(harness, key, body)
    put = httpx.put(document["upload"]["url"], content=body, headers=document["upload"]["headers"])
    assert put.status_code == 200, put.text
    harness.container.aws.sqs.purge_queue(QueueUrl=harness.env["DOCUCHAT_INGESTION_QUEUE_URL"])

    # When the sweep finds it after its URL expired
    clock.advance(seconds=harness.container.settings.upload_url_seconds + 600)
    assert sweep(harness) == {"failed": 0, "requeued": 1}
    harness.drain("ingestion")

    # Then it was handed to ingestion, as S3 would have, and is ready; the sweep has nothing left to do
    got = harness.call("GET", f"/v1/documents/{document['document_id']}", key=key).json
    assert got["status"] == "ready", got
    assert sweep(harness) == {"failed": 0, "requeued": 0}


def test_documents_whose_file_came_are_never_swept(harness: Harness, clock: FrozenClock) -> None:
    # Given an inline document and an uploaded one, both ingested
    _, key = harness.new_tenant()
    inline = harness.call("POST", "/v1/documents", {"title": "Inline", "text": "Open all week."}, key=key).json
    uploaded = upload(harness, key, "File", b"Closed on Sundays.", "text/plain")
    harness.drain("ingestion")

    # When the sweep runs long after their URLs expired
    clock.advance(days=1)

    # Then it finds nothing to do, and both stay ready
    assert sweep(harness) == {"failed": 0, "requeued": 0}
    for document in (inline, uploaded):
        assert harness.call("GET", f"/v1/documents/{document['document_id']}", key=key).json["status"] == "ready"
