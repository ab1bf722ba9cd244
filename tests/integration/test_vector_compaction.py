"""Compaction of vector segments into packs, end to end in-process (shared/data/compaction.py, decision 11):
a tenant of many small documents loads a few files; deletes and new uploads during or after a compaction are
never answered from what a pack still holds; large tenants get partitioned packs."""

from __future__ import annotations

from typing import Any

import pytest

from shared.data.compaction import Compactor
from shared.data.vectors import COMPACTION_SK, IndexTooLarge, S3VectorStore, packs_prefix, vectors_prefix
from shared.ingestion import COMPACT_MESSAGE, compaction_message
from tests.support.harness import Harness

DOCUMENTS = 12


def locker(n: int) -> str:
    return f"# Locker {n}\n\nThe code of locker number {n} is {7000 + n}. Lockers are on floor {n % 4}."


def objects(harness: Harness, prefix: str) -> list[str]:
    listed = harness.container.aws.s3.list_objects_v2(Bucket=harness.env["DOCUCHAT_DOCUMENTS_BUCKET"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def small_thresholds(store: S3VectorStore, documents: int = 8) -> None:
    store.compact_min_documents = documents  # 32 in production: a dozen documents stand in for 10,000


def tenant_with_lockers(
    harness: Harness, count: int = DOCUMENTS, compact: bool = True, compact_at: int = 8
) -> tuple[str, str, dict[int, str]]:
    """A tenant with `count` one-chunk documents, ingested, and compacted once due (unless not `compact`)."""
    if compact:
        small_thresholds(harness.container.vectors, compact_at)
    else:
        harness.container.vectors.compact_min_documents = 1_000_000
    tenant_id, key = harness.new_tenant()
    ids = {}
    for n in range(count):
        created = harness.call("POST", "/v1/documents", {"title": f"Locker {n}", "text": locker(n)}, key=key).json
        ids[n] = created["document_id"]
    harness.drain("ingestion", rounds=4 * count)  # one message a round
    return tenant_id, key, ids


def fresh_store(harness: Harness) -> S3VectorStore:
    """Another chat process's store: no warm index."""
    old = harness.container.vectors
    store = S3VectorStore(
        harness.container.aws.dynamodb,
        harness.env["DOCUCHAT_DOCUMENTS_TABLE"],
        harness.container.aws.s3,
        harness.env["DOCUCHAT_DOCUMENTS_BUCKET"],
        model=old.model,
        dimensions=old.dimensions,
        write_concurrency=old.write_concurrency,
    )
    store.compact_min_documents = old.compact_min_documents
    store.partition_min_rows = old.partition_min_rows
    return store


def counting_gets(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    fetched: list[str] = []
    s3 = harness.container.aws.s3
    get_object = s3.get_object

    def counting(**params: Any) -> Any:
        if params["Key"].startswith("vectors/"):
            fetched.append(params["Key"])
        return get_object(**params)

    monkeypatch.setattr(s3, "get_object", counting)
    return fetched


def ask(harness: Harness, key: str, question: str) -> dict[str, Any]:
    answer: dict[str, Any] = harness.call("POST", "/v1/chat", {"message": question}, key=key).json
    return answer


def test_a_tenant_with_many_small_documents_loads_one_pack_not_a_segment_each(
    any_harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = any_harness  # DynamoDB on moto, then on DynamoDB Local
    # Given a tenant whose documents were uploaded one by one, not compacted yet, and what its searches find
    tenant_id, key, ids = tenant_with_lockers(harness, compact=False)
    store = harness.container.vectors
    assert store.manifest(tenant_id).packs == {} and store.head(tenant_id)["loose_documents"] == DOCUMENTS
    loose_index = fresh_store(harness).index(tenant_id)
    before = {q: loose_index.keyword_search(q, 5) for q in ("locker 3 code", "floor 2")}

    # When compaction is due (32 loose documents in production), and its message is handled
    small_thresholds(store)
    assert store.compaction_due(tenant_id)
    harness.container.ingestion._continuations.send(compaction_message(tenant_id))
    harness.drain("ingestion")

    # Then every document is in one pack, and their own segment files are gone
    manifest = store.manifest(tenant_id)
    assert len(manifest.packs) == 1
    (pack,) = manifest.packs.values()
    assert pack.documents == DOCUMENTS and not pack.codebook  # a small tenant: a flat pack
    assert {e.pack for e in manifest.documents.values()} == {pack.pack_id}
    assert all(objects(harness, vectors_prefix(tenant_id, d)) == [] for d in ids.values())
    assert store.head(tenant_id)["loose_documents"] == 0
    # And a cold chat process fetches one file for the whole tenant, and finds what it found before
    fetched = counting_gets(harness, monkeypatch)
    index = fresh_store(harness).index(tenant_id)
    assert fetched == [pack.key] and index.rows == DOCUMENTS
    assert {q: index.keyword_search(q, 5) for q in before} == before
    answer = ask(harness, key, "What is the code of locker number 9?")
    assert "7009" in answer["answer"] and answer["citations"][0]["document_id"] == ids[9]


def test_a_document_deleted_after_compaction_never_answers_and_leaves_s3_at_the_next_compaction(
    harness: Harness,
) -> None:
    tenant_id, key, ids = tenant_with_lockers(harness)
    store = harness.container.vectors
    (old_pack,) = store.manifest(tenant_id).packs.values()
    assert "7005" in ask(harness, key, "What is the code of locker number 5?")["answer"]  # warm now

    # When document 5 is deleted: the pack still holds its rows
    assert harness.call("DELETE", f"/v1/documents/{ids[5]}", key=key).status == 204

    # Then neither the warm index nor a cold one finds it, by vector or by keyword
    answer = ask(harness, key, "What is the code of locker number 5?")
    assert "7005" not in answer["answer"] and ids[5] not in [c["document_id"] for c in answer["citations"]]
    cold = fresh_store(harness).index(tenant_id)
    assert ids[5] not in cold.documents and cold.rows == DOCUMENTS - 1
    assert all(h.document_id != ids[5] for h in cold.keyword_search("locker 5 code 7005", 20))
    # And the delete made a compaction due, which the ingestion queue has been asked for
    assert store.head(tenant_id)["dead_rows"] == 1 and harness.queued("ingestion") == 1

    # When it runs: a new pack without the deleted rows, the old one gone from S3
    harness.drain("ingestion")
    manifest = store.manifest(tenant_id)
    (new_pack,) = manifest.packs.values()
    assert new_pack.pack_id != old_pack.pack_id and new_pack.documents == new_pack.rows == DOCUMENTS - 1
    assert objects(harness, packs_prefix(tenant_id)) == [new_pack.key]
    assert store.head(tenant_id)["dead_rows"] == 0
    assert "7005" not in ask(harness, key, "What is the code of locker number 5?")["answer"]
    assert "7006" in ask(harness, key, "What is the code of locker number 6?")["answer"]


def test_uploads_and_deletes_racing_a_compaction_are_never_answered_from_the_old_rows(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tenant of loose documents about to be compacted
    tenant_id, key, ids = tenant_with_lockers(harness, compact=False)
    store = harness.container.vectors
    small_thresholds(store)
    source = f"tenants/{tenant_id}/documents/{ids[3]}/source"
    packed_generation = store.manifest(tenant_id).documents[ids[3]].generation
    point = Compactor._point

    def racing(self: Compactor, tenant: str, pack_id: str, group: Any) -> set[str]:
        # After the pack is written, before the manifest points at it: locker 3 is uploaded again with a new
        # code, locker 4 is deleted, and a new document is published
        harness.container.blobs.put(source, b"# Locker 3\n\nThe code of locker number 3 is now 9993.", "text/markdown")
        harness.drain("ingestion")
        assert harness.call("DELETE", f"/v1/documents/{ids[4]}", key=key).status == 204
        harness.call("POST", "/v1/documents", {"title": "Gate", "text": "The gate code is 4242."}, key=key)
        harness.drain("ingestion")
        return point(self, tenant, pack_id, group)

    monkeypatch.setattr(Compactor, "_point", racing)

    # When the compaction runs
    result = store.compact(tenant_id, harness.container.clock())

    # Then the documents changed meanwhile were left out of the pack's manifest, the others pointed at it
    assert result.documents_packed == DOCUMENTS - 2 and result.documents_changed == 2
    manifest = store.manifest(tenant_id)
    assert manifest.documents[ids[3]].pack is None and ids[4] not in manifest.documents
    # And every search, warm or cold, answers from the new upload and never from the packed rows
    for index in (store.index(tenant_id), fresh_store(harness).index(tenant_id)):
        assert index.documents[ids[3]] == manifest.documents[ids[3]].generation != packed_generation
        assert ids[4] not in index.documents
        codes = " ".join(str(h) for h in index.keyword_search("code of locker number 3 is", 30))
        assert ids[4] not in codes
    answer = ask(harness, key, "What is the code of locker number 3?")
    assert "9993" in answer["answer"] and "7003" not in answer["answer"]
    assert "7004" not in ask(harness, key, "What is the code of locker number 4?")["answer"]
    assert "4242" in ask(harness, key, "What is the gate code?")["answer"]
    # And the next compaction packs what was left out, and drops the pack's rows nobody is served
    monkeypatch.setattr(Compactor, "_point", point)
    store.compact(tenant_id, harness.container.clock())
    manifest = store.manifest(tenant_id)
    assert all(e.pack for e in manifest.documents.values())
    assert sum(p.rows for p in manifest.packs.values()) == len(manifest.documents) == DOCUMENTS
    assert "9993" in ask(harness, key, "What is the code of locker number 3?")["answer"]


def test_a_compaction_while_another_holds_the_lease_does_nothing_and_a_repeat_changes_nothing(
    harness: Harness,
) -> None:
    tenant_id, _, _ = tenant_with_lockers(harness, compact=False)
    store = harness.container.vectors
    small_thresholds(store)
    now = harness.container.clock()
    harness.container.aws.dynamodb.put_item(
        TableName=harness.env["DOCUCHAT_DOCUMENTS_TABLE"],
        Item={
            "pk": {"S": tenant_id},
            "sk": {"S": COMPACTION_SK},
            "owner": {"S": "someone"},
            "until": {"N": str(int(now.timestamp()) + 60)},
        },
    )
    assert store.compact(tenant_id, now).skipped == "another compaction of this tenant is running"
    assert store.manifest(tenant_id).packs == {}

    harness.container.aws.dynamodb.delete_item(
        TableName=harness.env["DOCUCHAT_DOCUMENTS_TABLE"], Key={"pk": {"S": tenant_id}, "sk": {"S": COMPACTION_SK}}
    )
    assert store.compact(tenant_id, now).packs_written == 1
    version, packs = store.manifest_version(tenant_id), store.manifest(tenant_id).packs
    again = store.compact(tenant_id, now)
    assert again.skipped == "nothing to compact" and again.packs_written == 0
    assert store.manifest(tenant_id).packs == packs and store.manifest_version(tenant_id) == version


def test_a_large_tenant_gets_partitioned_packs_that_a_cold_index_searches_by_partition(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a tenant past the partitioning threshold (made small here: 50,000 rows in production)
    store = harness.container.vectors
    store.partition_min_rows = 10
    # (compacted at 6 documents, below the threshold: a flat pack; then at 12, above it: the flat pack is rewritten)
    tenant_id, key, ids = tenant_with_lockers(harness, count=12, compact_at=6)

    # Then its pack is partitioned under a codebook stored beside it
    manifest = store.manifest(tenant_id)
    packs = list(manifest.packs.values())
    assert len(packs) == 1 and packs[0].codebook and packs[0].codebook_rows == packs[0].rows == 12
    assert sorted(objects(harness, packs_prefix(tenant_id))) == sorted(
        [packs[0].key, f"{packs_prefix(tenant_id)}{packs[0].codebook}.codebook"]
    )
    # And a cold index holds it as a partitioned view (no flat rows), and answers from it
    index = fresh_store(harness).index(tenant_id)
    assert list(index.packs) == [packs[0].pack_id] and index.flat_documents == {} and index.rows == 12
    answer = ask(harness, key, "What is the code of locker number 11?")
    assert "7011" in answer["answer"] and answer["citations"][0]["document_id"] == ids[11]

    # When a new document arrives, the warm index keeps the pack and adds the document to its flat part
    fetched = counting_gets(harness, monkeypatch)
    harness.call("POST", "/v1/documents", {"title": "Gate", "text": "The gate code is 4242."}, key=key)
    harness.drain("ingestion")
    assert "4242" in ask(harness, key, "What is the gate code?")["answer"]
    assert [k for k in fetched if "_packs" in k] == []  # the pack was not fetched again


def test_a_tenant_larger_than_the_function_may_hold_is_refused_not_loaded(harness: Harness) -> None:
    tenant_id, _, _ = tenant_with_lockers(harness, count=3)
    store = fresh_store(harness)
    store._cache = type(store._cache)(max_rows=2)
    with pytest.raises(IndexTooLarge, match="3 rows"):
        store.index(tenant_id)


def test_a_compaction_message_on_the_ingestion_queue_is_handled(harness: Harness) -> None:
    tenant_id, _, _ = tenant_with_lockers(harness, compact=False)
    small_thresholds(harness.container.vectors)
    sqs = harness.container.aws.sqs
    sqs.send_message(
        QueueUrl=harness.env["DOCUCHAT_INGESTION_QUEUE_URL"],
        MessageBody=f'{{"docuchat": "{COMPACT_MESSAGE}", "tenant_id": "{tenant_id}"}}',
    )
    harness.drain("ingestion")
    assert len(harness.container.vectors.manifest(tenant_id).packs) == 1
