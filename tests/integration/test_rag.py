"""RAG end to end in-process: ingestion in resumable steps, embedding usage metered once, the vector store
(segments in S3, manifest in DynamoDB, warm index), hybrid retrieval, tenant isolation and deletion."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from shared.data.vectors import MANIFEST_SK, SEGMENT_PREFIX
from shared.embeddings import EmbeddingError
from shared.ingestion import IngestOutcome, Upload
from tests.support.embedders import HashingEmbedder
from tests.support.files import pdf
from tests.support.harness import Harness

HANDBOOK = """# Leave

Every employee gets 25 days of annual leave a year. Unused days expire on 31 March.

# Expenses

Submit receipts within 30 days through Ledgerly. Your manager approves claims above 200 euros.

# Equipment

Laptops are replaced every three years. Report a lost laptop to security within one hour.
"""


def objects(harness: Harness, prefix: str) -> list[str]:
    listed = harness.container.aws.s3.list_objects_v2(Bucket=harness.env["DOCUCHAT_DOCUMENTS_BUCKET"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def peek_usage_events(harness: Harness) -> list[dict[str, Any]]:
    """The usage events waiting on the queue, read and put back for metering."""
    sqs = harness.container.aws.sqs
    url = harness.env["DOCUCHAT_USAGE_QUEUE_URL"]
    messages: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60).get("Messages"):
        messages += batch
    for message in messages:
        sqs.change_message_visibility(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return [json.loads(m["Body"]) for m in messages]


def many_sections(count: int) -> str:
    return "\n\n".join(
        f"# Section {n}\n\nItem {n} of the catalogue costs {n * 7} euros and ships in {n % 5 + 1} days. "
        + "Further details follow in plain words. " * 30
        for n in range(count)
    )


def test_a_document_becomes_ready_with_its_vectors_in_s3_and_its_segment_in_the_manifest(any_harness: Harness) -> None:
    harness = any_harness  # DynamoDB on moto, then on DynamoDB Local
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    harness.drain("ingestion")

    document = harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).json
    assert document["status"] == "ready" and document["progress"] is None
    entries = harness.container.vectors.entries(tenant_id)
    assert [e.document_id for e in entries] == [created["document_id"]]
    assert entries[0].rows == document["chunk_count"] and entries[0].model == "test-hashing"
    assert objects(harness, f"vectors/{tenant_id}/{created['document_id']}/") == [entries[0].key]
    assert harness.container.vectors.manifest_version(tenant_id) == 1

    answer = harness.call("POST", "/v1/chat", {"message": "How many days of annual leave do I get?"}, key=key).json
    assert answer["route"] == "rag"
    citation = answer["citations"][0]
    assert citation["document_id"] == created["document_id"] and citation["title"] == "Handbook"
    assert "25 days" in citation["snippet"]


def test_a_large_document_is_embedded_across_several_messages_and_shows_its_progress(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an embedder taking 16 chunks a call, and a function that runs short of time after every batch
    embedder: HashingEmbedder = harness.container.embedder  # type: ignore[assignment]
    monkeypatch.setattr(harness.container.ingestion, "_settings", _with(harness, ingestion_time_margin_seconds=600))
    _, key = harness.new_tenant()
    harness.drain("ingestion")  # S3's own test event, sent when notifications were configured
    created = harness.call("POST", "/v1/documents", {"title": "Catalogue", "text": many_sections(40)}, key=key).json
    document_path = f"/v1/documents/{created['document_id']}"

    # When the upload's event is handled once
    harness.drain("ingestion", rounds=1)

    # Then one batch is embedded, the rest is handed to a new message, and the status shows how far it got
    document = harness.call("GET", document_path, key=key).json
    assert document["status"] == "processing", document
    progress = document["progress"]
    assert progress["stage"] == "embedding" and progress["chunks_embedded"] == 16
    assert progress["chunk_count"] > 32 and 10 < progress["percent"] < 95
    assert harness.queued("ingestion") == 1

    # When the continuations run, then it finishes, one batch an invocation
    harness.drain("ingestion", rounds=50)
    document = harness.call("GET", document_path, key=key).json
    assert document["status"] == "ready", document
    assert sum(embedder.calls) == document["chunk_count"]  # each chunk embedded exactly once
    assert len(embedder.calls) == -(-document["chunk_count"] // 16)
    answer = harness.call("POST", "/v1/chat", {"message": "How much does item 37 cost?"}, key=key).json
    assert "259 euros" in answer["answer"], answer


def test_embedding_tokens_are_metered_once_even_when_a_batch_is_embedded_twice(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an ingestion that dies after metering its second batch, before recording it
    _, key = harness.new_tenant()
    vectors = harness.container.vectors
    write_part = vectors.write_part
    failures = {"left": 1}

    def crash_once(tenant: str, document: str, generation: str, start: int, array: Any) -> None:
        if start > 0 and failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("the function timed out")
        write_part(tenant, document, generation, start, array)

    monkeypatch.setattr(vectors, "write_part", crash_once)
    harness.call("POST", "/v1/documents", {"title": "Catalogue", "text": many_sections(6)}, key=key)

    # When SQS redelivers the event and the document completes
    harness.drain("ingestion", rounds=5)

    # Then the batch embedded twice was sent twice with the same event id, and metering counts it once
    events = peek_usage_events(harness)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids)) + 1, "the crashed batch's event is sent again with the same id"
    harness.drain("usage")
    usage = harness.call("GET", "/v1/usage", key=key).json
    unique = {e["event_id"]: e["input_tokens"] for e in events}
    assert usage["total_tokens"] == sum(unique.values())
    assert all(day["model"] == "test-hashing" for day in usage["days"])


def test_a_redelivered_event_changes_nothing_and_a_new_upload_replaces_the_chunks(any_harness: Harness) -> None:
    harness = any_harness  # DynamoDB on moto, then on DynamoDB Local
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    document_id = created["document_id"]
    harness.drain("ingestion")
    source = f"tenants/{tenant_id}/documents/{document_id}/source"
    first = harness.container.vectors.entries(tenant_id)[0]
    ingestion = harness.container.ingestion
    embedder: HashingEmbedder = harness.container.embedder  # type: ignore[assignment]

    # An upload's event delivered twice: the second delivery is skipped and embeds nothing
    assert ingestion.ingest(Upload(source, "etag-2|seq-2|time-2"), lambda: 300.0) == IngestOutcome.READY
    calls = list(embedder.calls)
    assert ingestion.ingest(Upload(source, "etag-2|seq-2|time-2"), lambda: 300.0) == IngestOutcome.SKIPPED
    assert embedder.calls == calls
    assert harness.container.documents.read_chunks(tenant_id, document_id)[-1].index == first.rows - 1

    # A new upload of other content: a new generation replaces the chunks and the segment, never duplicates
    harness.container.blobs.put(source, b"# Leave\n\nEveryone now gets 30 days of annual leave.", "text/markdown")
    harness.drain("ingestion")
    document = harness.call("GET", f"/v1/documents/{document_id}", key=key).json
    assert document["status"] == "ready" and document["chunk_count"] == 1
    chunks = harness.container.documents.read_chunks(tenant_id, document_id)
    assert [c.index for c in chunks] == [0] and "30 days" in chunks[0].text
    entries = harness.container.vectors.entries(tenant_id)
    assert len(entries) == 1 and entries[0].generation != first.generation and entries[0].rows == 1
    assert objects(harness, f"vectors/{tenant_id}/{document_id}/") == [entries[0].key]
    answer = harness.call("POST", "/v1/chat", {"message": "How many days of annual leave?"}, key=key).json
    assert "30 days" in answer["answer"] and "25 days" not in answer["answer"]


def test_the_warm_index_is_reused_until_the_manifest_version_moves(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key)
    harness.drain("ingestion")
    s3 = harness.container.aws.s3
    fetched: list[str] = []
    get_object = s3.get_object

    def counting(**params: Any) -> Any:
        fetched.append(params["Key"])
        return get_object(**params)

    monkeypatch.setattr(s3, "get_object", counting)
    for _ in range(3):
        harness.call("POST", "/v1/chat", {"message": "annual leave days?"}, key=key)
    segments = [k for k in fetched if k.startswith("vectors/") and "/part-" not in k]  # parts: ingestion's reads
    assert len(segments) == 1  # loaded once, then warm

    harness.call("POST", "/v1/documents", {"title": "Travel", "text": "Book trains for trips under 500 km."}, key=key)
    harness.drain("ingestion")
    answer = harness.call("POST", "/v1/chat", {"message": "Should I book trains for short trips?"}, key=key).json
    assert answer["citations"][0]["title"] == "Travel"
    # Only the new document's segment was fetched; the one already held was kept
    assert len([k for k in fetched if k.startswith("vectors/") and "/part-" not in k]) == 2


def test_a_trusted_warm_index_skips_the_manifest_read_and_a_new_document_answers_once_the_trust_ends(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a warm function that trusts a tenant's index for 5 s (the stacks' DOCUCHAT_INDEX_TRUST_SECONDS)
    store = harness.container.vectors
    now = [1000.0]
    monkeypatch.setattr(store, "version_trust_seconds", 5.0)
    monkeypatch.setattr(store, "_clock", lambda: now[0])
    _, key = harness.new_tenant()
    handbook = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    harness.drain("ingestion")
    reads: list[str] = []
    record = lambda params, **_: reads.append(params.get("Key", {}).get("sk", {}).get("S", ""))  # noqa: E731
    events = harness.container.aws.dynamodb.meta.events

    def ask(question: str, seconds_later: float) -> tuple[list[str], int]:
        """The titles cited, and how often the chat read the manifest."""
        now[0] += seconds_later
        reads.clear()
        events.register("before-parameter-build.dynamodb.GetItem", record)
        try:
            answer = harness.call("POST", "/v1/chat", {"message": question}, key=key).json
        finally:
            events.unregister("before-parameter-build.dynamodb.GetItem", record)
        return [c["title"] for c in answer["citations"]], reads.count(MANIFEST_SK)

    titles, manifest_reads = ask("How many days of annual leave?", 0)
    assert "Handbook" in titles and manifest_reads == 1  # the index loads
    assert ask("How many days of annual leave?", 2)[1] == 0  # within the trust: no read

    # When a new document is ready while the index is trusted, it answers once the trust has run out
    harness.call("POST", "/v1/documents", {"title": "Travel", "text": "Book trains for trips under 500 km."}, key=key)
    harness.drain("ingestion")
    titles, manifest_reads = ask("Should I book trains for short trips?", 1)
    assert "Travel" not in titles and manifest_reads == 0
    titles, manifest_reads = ask("Should I book trains for short trips?", 5)
    assert titles[0] == "Travel" and manifest_reads == 1

    # And a document deleted while the index is trusted is not cited: its chunks' text is gone with it
    assert harness.call("DELETE", f"/v1/documents/{handbook['document_id']}", key=key).status == 204
    titles, manifest_reads = ask("How many days of annual leave?", 1)
    assert "Handbook" not in titles and manifest_reads == 0


def test_many_threads_asking_for_a_cold_index_load_it_once(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tenant with a document, and no warm index yet
    tenant_id, key = any_harness.new_tenant()
    any_harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key)
    any_harness.drain("ingestion")
    store = any_harness.container.vectors
    loads: list[str] = []
    load = store._load

    def counting(tenant: str, previous: Any) -> Any:
        loads.append(tenant)
        return load(tenant, previous)

    monkeypatch.setattr(store, "_load", counting)

    # When 16 threads ask for its index at the same moment
    barrier = threading.Barrier(16)

    def ask(_: int) -> Any:
        barrier.wait()
        return store.index(tenant_id)

    with ThreadPoolExecutor(max_workers=16) as pool:
        indexes = list(pool.map(ask, range(16)))

    # Then it was loaded once, and every thread got that one index
    assert loads == [tenant_id]
    assert all(index is indexes[0] for index in indexes) and indexes[0].rows > 0


def test_one_tenant_never_sees_another_tenants_documents(harness: Harness) -> None:
    _, owner_key = harness.new_tenant("Owner")
    _, other_key = harness.new_tenant("Other")
    harness.call("POST", "/v1/documents", {"title": "Secret", "text": "The vault code is 7741."}, key=owner_key)
    harness.drain("ingestion")

    mine = harness.call("POST", "/v1/chat", {"message": "What is the vault code?"}, key=owner_key).json
    assert "7741" in mine["answer"]
    theirs = harness.call("POST", "/v1/chat", {"message": "What is the vault code?"}, key=other_key).json
    assert theirs["route"] == "not_found" and theirs["citations"] == [] and "7741" not in theirs["answer"]


def test_a_segment_entry_pointing_into_another_tenants_vectors_is_refused(harness: Harness) -> None:
    owner_id, owner_key = harness.new_tenant("Owner")
    intruder_id, _ = harness.new_tenant("Intruder")
    harness.call("POST", "/v1/documents", {"title": "Secret", "text": "The vault code is 7741."}, key=owner_key)
    harness.drain("ingestion")
    stolen = harness.container.vectors.entries(owner_id)[0]
    dynamodb = harness.container.aws.dynamodb
    table = harness.env["DOCUCHAT_DOCUMENTS_TABLE"]
    dynamodb.put_item(
        TableName=table,
        Item={
            "pk": {"S": intruder_id},
            "sk": {"S": SEGMENT_PREFIX + stolen.document_id},
            "generation": {"S": stolen.generation},
            "key": {"S": stolen.key},
            "rows": {"N": str(stolen.rows)},
            "model": {"S": stolen.model},
        },
    )
    dynamodb.put_item(TableName=table, Item={"pk": {"S": intruder_id}, "sk": {"S": MANIFEST_SK}, "version": {"N": "1"}})
    with pytest.raises(ValueError, match="outside tenant"):
        harness.container.vectors.index(intruder_id)


def test_deleting_a_document_removes_its_vectors_and_chunks_and_bumps_the_manifest(any_harness: Harness) -> None:
    harness = any_harness  # DynamoDB on moto, then on DynamoDB Local
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    harness.drain("ingestion")
    assert harness.call("POST", "/v1/chat", {"message": "annual leave days?"}, key=key).json["route"] == "rag"
    version = harness.container.vectors.manifest_version(tenant_id)

    assert harness.call("DELETE", f"/v1/documents/{created['document_id']}", key=key).status == 204

    assert harness.container.vectors.entries(tenant_id) == []
    assert harness.container.vectors.manifest_version(tenant_id) == version + 1
    assert objects(harness, f"vectors/{tenant_id}/") == []
    assert harness.container.documents.read_chunks(tenant_id, created["document_id"]) == []
    answer = harness.call("POST", "/v1/chat", {"message": "annual leave days?"}, key=key).json
    assert answer["route"] == "not_found" and answer["citations"] == []
    assert answer["answer"].startswith("I don't know")


def test_documents_embedded_with_another_model_still_answer_by_keyword(harness: Harness) -> None:
    _, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key)
    harness.drain("ingestion")

    # The embedder changes (say, an OpenAI key was added): old segments keep answering keyword queries
    harness.container.vectors._model = "another-model"  # what a new process with the new embedder would hold
    harness.container.vectors._cache = type(harness.container.vectors._cache)(1_000_000)
    answer = harness.call("POST", "/v1/chat", {"message": "Who approves expense claims above 200 euros?"}, key=key)
    assert answer.json["route"] == "rag" and "manager" in answer.json["answer"].lower()


def test_a_500_page_pdf_ingests_in_steps_within_the_functions_limits(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a 500-page PDF and a function that must hand work on every few batches
    monkeypatch.setattr(harness.container.ingestion, "_settings", _with(harness, ingestion_time_margin_seconds=600))
    embedder: HashingEmbedder = harness.container.embedder  # type: ignore[assignment]
    embedder.batch_size = 256
    pages = [
        f"Page {n}. The part number of page {n} is PN-{n:04d}. " + "Plain filler words here. " * 60 for n in range(500)
    ]
    body = pdf(*pages)
    from tests.integration.test_uploads import upload

    _, key = harness.new_tenant()
    document = upload(harness, key, "Big manual", body, "application/pdf")

    # Then it is ready after several invocations, every chunk embedded once, and answers from its last page
    harness.drain("ingestion", rounds=200)
    document = harness.call("GET", f"/v1/documents/{document['document_id']}", key=key).json
    assert document["status"] == "ready", document
    assert document["chunk_count"] > 500
    assert sum(embedder.calls) == document["chunk_count"] and len(embedder.calls) > 2
    answer = harness.call("POST", "/v1/chat", {"message": "What is the part number PN-0499?"}, key=key).json
    assert any("PN-0499" in c["snippet"] for c in answer["citations"]), answer


def _with(harness: Harness, **updates: Any) -> Any:
    return harness.container.settings.model_copy(update=updates)


def test_unknown_and_malformed_messages_on_the_ingestion_queue_are_acknowledged_not_looped(harness: Harness) -> None:
    sqs = harness.container.aws.sqs
    url = harness.env["DOCUCHAT_INGESTION_QUEUE_URL"]
    for body in ('{"docuchat": "ingestion.continue"}', "not json", '{"Event": "s3:TestEvent"}', "[1, 2]"):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    assert harness.drain("ingestion") >= 4  # each handled successfully (with S3's own test event, if queued)
    assert harness.queued("ingestion") == 0
    assert not sqs.receive_message(QueueUrl=url + "-dlq").get("Messages")


def test_a_failed_upload_redriven_from_the_dlq_is_processed_again(harness: Harness) -> None:
    # Given an upload whose embedding failed on every delivery (the embedder was down)
    embedder: HashingEmbedder = harness.container.embedder  # type: ignore[assignment]
    embedder.fail_calls = 100
    _, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    for _ in range(8):
        harness.drain("ingestion", rounds=1)
    document = harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).json
    assert document["status"] == "failed" and "injected failure" in document["reason"]

    # When the embedder is back and the operator redrives the DLQ
    embedder.fail_calls = 0
    sqs = harness.container.aws.sqs
    url = harness.env["DOCUCHAT_INGESTION_QUEUE_URL"]
    for message in sqs.receive_message(QueueUrl=url + "-dlq", MaxNumberOfMessages=10).get("Messages", []):
        sqs.send_message(QueueUrl=url, MessageBody=message["Body"])
    harness.drain("ingestion")

    # Then the document is ready and answers
    document = harness.call("GET", f"/v1/documents/{created['document_id']}", key=key).json
    assert document["status"] == "ready", document
    answer = harness.call("POST", "/v1/chat", {"message": "How many days of annual leave?"}, key=key).json
    assert "25 days" in answer["answer"]


def test_a_new_upload_takes_the_old_vectors_out_and_an_older_upload_failing_late_cannot_fail_it(
    harness: Harness,
) -> None:
    tenant_id, key = harness.new_tenant()
    created = harness.call("POST", "/v1/documents", {"title": "Handbook", "text": HANDBOOK}, key=key).json
    source = f"tenants/{tenant_id}/documents/{created['document_id']}/source"
    ingestion = harness.container.ingestion
    embedder: HashingEmbedder = harness.container.embedder  # type: ignore[assignment]
    assert ingestion.ingest(Upload(source, "upload-a"), lambda: 300.0) == IngestOutcome.READY

    # Upload B is claimed, and stops halfway (its embedding call fails; SQS will retry it)
    embedder.fail_calls = 1
    with pytest.raises(EmbeddingError):
        ingestion.ingest(Upload(source, "upload-b"), lambda: 300.0)
    document = harness.container.documents.get(tenant_id, created["document_id"])
    assert document is not None and document.status == "processing"
    # A's vectors are out of the index: B's chunks must never be cited through A's vectors
    assert harness.container.vectors.entries(tenant_id) == []

    # Upload A's message failing late does not fail B
    ingestion.fail_upload(Upload(source, "upload-a"), "a late failure of the older upload")
    document = harness.container.documents.get(tenant_id, created["document_id"])
    assert document is not None and document.status == "processing"

    # B's retry completes it
    assert ingestion.ingest(Upload(source, "upload-b"), lambda: 300.0) == IngestOutcome.READY
    assert [e.generation for e in harness.container.vectors.entries(tenant_id)] == [
        Upload(source, "upload-b").generation
    ]
