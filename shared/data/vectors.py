"""The S3 + DynamoDB vector store: segments in S3, a manifest per tenant in DynamoDB, a warm index in memory.

Layout:
- S3 `vectors/<tenant>/<document>/<generation>.seg`: a document's segment (shared/vectors.py), written once.
- S3 `vectors/<tenant>/<document>/<generation>/part-<start>.npz`: vectors of an ingestion still running.
- documents table, pk = tenant:
  - sk `index`: the manifest head, {version}; every publish or removal adds one to it;
  - sk `vseg#<document>`: the document's current segment {generation, key, rows, model}.

A reader compares the manifest version with the one its warm index was built at (one consistent GetItem a
query) and, when it moved, loads only the segments it does not hold yet. Nothing here is shared between
tenants: keys are built from the tenant id, and every segment says whose it is.

Another store (S3 Vectors, OpenSearch Serverless) can replace this one by implementing the same three
methods, `publish`, `remove` and `search` (see shared/retrieval.py and docs/decisions/0005-retrieval.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.data.documents import DOC_PREFIX
from shared.data.dynamo import cancellation_codes, from_item, query_all, to_item, values
from shared.errors import NotFound
from shared.observability import logger
from shared.vectors import Hit, Segment, TenantIndex

MANIFEST_SK = "index"
SEGMENT_PREFIX = "vseg#"
_LOAD_THREADS = 8


def vectors_prefix(tenant_id: str, document_id: str) -> str:
    return f"vectors/{tenant_id}/{document_id}/"


def segment_key(tenant_id: str, document_id: str, generation: str) -> str:
    return f"{vectors_prefix(tenant_id, document_id)}{generation}.seg"


def part_key(tenant_id: str, document_id: str, generation: str, start: int) -> str:
    return f"{vectors_prefix(tenant_id, document_id)}{generation}/part-{start:06d}.npz"


@dataclass(frozen=True)
class SegmentEntry:
    document_id: str
    generation: str
    key: str
    rows: int
    model: str


@dataclass(frozen=True)
class SearchHits:
    vector: list[Hit]
    keyword: list[Hit]


class S3VectorStore:
    def __init__(
        self,
        dynamodb: Any,
        table: str,
        s3: Any,
        bucket: str,
        model: str,
        dimensions: int,
        cache_rows: int = 150_000,
    ) -> None:
        self._db = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = bucket
        self._model = model
        self._dimensions = dimensions
        self._cache = _IndexCache(cache_rows)

    # Writing: ingestion
    def write_part(self, tenant_id: str, document_id: str, generation: str, start: int, vectors: np.ndarray) -> None:
        """Vectors of chunks start.. of an ingestion in progress; rewriting a part is harmless."""
        key = part_key(tenant_id, document_id, generation, start)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=_npz(vectors=np.asarray(vectors, dtype=np.float32)))

    def read_parts(self, tenant_id: str, document_id: str, generation: str, rows: int) -> np.ndarray:
        """The vectors of chunks 0..rows-1 from the parts written, as one float32 array.

        Parts are keyed by their first chunk and followed from 0, so a part rewritten by a retry (even with
        other batch bounds) never adds rows twice.
        """
        prefix = f"{vectors_prefix(tenant_id, document_id)}{generation}/part-"
        parts: dict[int, str] = {int(key[len(prefix) : -len(".npz")]): key for key in self._keys(prefix)}
        arrays, cursor = [], 0
        while cursor < rows:
            if cursor not in parts:
                raise RuntimeError(f"vectors of chunks from {cursor} of document {document_id} are missing")
            body = self._s3.get_object(Bucket=self._bucket, Key=parts[cursor])["Body"].read()
            arrays.append(_load_npz(body)["vectors"])
            cursor += len(arrays[-1])
        vectors = np.concatenate(arrays) if arrays else np.zeros((0, self._dimensions), dtype=np.float32)
        return vectors[:rows]

    def publish(self, segment: Segment, ready_at: datetime) -> None:
        """Make a document's segment the one searches use and mark the document ready, in one transaction.

        Only while the document is still being processed in this generation: a stale ingestion (an older
        upload finishing late, or a document deleted meanwhile) raises NotFound and changes nothing.
        """
        key = segment_key(segment.tenant_id, segment.document_id, segment.generation)
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=segment.to_bytes())
        entry = {
            "pk": segment.tenant_id,
            "sk": SEGMENT_PREFIX + segment.document_id,
            "generation": segment.generation,
            "key": key,
            "rows": segment.rows,
            "model": segment.model,
        }
        mark_ready = {
            "Update": {
                "TableName": self._table,
                "Key": to_item({"pk": segment.tenant_id, "sk": DOC_PREFIX + segment.document_id}),
                "UpdateExpression": "SET #status = :ready, updated_at = :now REMOVE stage",
                "ConditionExpression": "#status = :processing AND generation = :generation",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": values(
                    ready="ready", now=ready_at.isoformat(), processing="processing", generation=segment.generation
                ),
            }
        }
        try:
            self._db.transact_write_items(
                TransactItems=[
                    mark_ready,
                    {"Put": {"TableName": self._table, "Item": to_item(entry)}},
                    self._bump_version(segment.tenant_id),
                ]
            )
        except ClientError as error:
            if "ConditionalCheckFailed" in cancellation_codes(error):
                self._delete_keys([key])
                raise NotFound(f"document {segment.document_id} is no longer processing this upload") from error
            raise
        # Earlier generations' segments, and this one's parts. (Readers holding the old manifest may still fetch
        # an old segment for a moment; they reload on NoSuchKey.) Parts of a newer upload are left alone.
        prefix = vectors_prefix(segment.tenant_id, segment.document_id)
        own_parts = f"{prefix}{segment.generation}/"
        self._delete_keys(k for k in self._keys(prefix) if (k.endswith(".seg") and k != key) or k.startswith(own_parts))

    def remove(self, tenant_id: str, document_id: str) -> None:
        """Take a document out of the index, then delete its vector files. Safe to repeat.

        The manifest version moves only when there was a segment, so warm indexes are not rebuilt for nothing.
        """
        entry_key = to_item({"pk": tenant_id, "sk": SEGMENT_PREFIX + document_id})
        if "Item" in self._db.get_item(TableName=self._table, Key=entry_key, ConsistentRead=True):
            self._remove_entry(tenant_id, document_id)
        self._delete_keys(self._keys(vectors_prefix(tenant_id, document_id)))

    def _remove_entry(self, tenant_id: str, document_id: str) -> None:
        self._db.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": to_item({"pk": tenant_id, "sk": SEGMENT_PREFIX + document_id}),
                    }
                },
                self._bump_version(tenant_id),
            ]
        )

    def _bump_version(self, tenant_id: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_item({"pk": tenant_id, "sk": MANIFEST_SK}),
                "UpdateExpression": "ADD #version :one",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": values(one=1),
            }
        }

    # Reading: chat
    def search(self, tenant_id: str, query: np.ndarray | None, question: str, k: int) -> SearchHits:
        """The tenant's best k rows by vector (when a query vector is given) and by keyword."""
        index = self.index(tenant_id)
        vector_hits = index.vector_search(query, k) if query is not None else []
        return SearchHits(vector=vector_hits, keyword=index.keyword_search(question, k))

    def index(self, tenant_id: str) -> TenantIndex:
        """The tenant's warm index, refreshed when the manifest version has moved since it was built.

        Indexes are immutable once built, so searches share them freely; a refresh builds a new one. One thread
        loads a tenant at a time: the others wait for its result instead of fetching the same segments again.
        """
        version = self.manifest_version(tenant_id)
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] >= version:
            return cached[1]
        with self._cache.loading(tenant_id):
            cached = self._cache.get(tenant_id)
            if cached is not None and cached[0] >= version:  # loaded by another thread while this one waited
                return cached[1]
            index = self._load(tenant_id, cached[1] if cached else None)
            self._cache.put(tenant_id, version, index)
            return index

    def manifest_version(self, tenant_id: str) -> int:
        item = self._db.get_item(
            TableName=self._table, Key=to_item({"pk": tenant_id, "sk": MANIFEST_SK}), ConsistentRead=True
        ).get("Item")
        return int(from_item(item).get("version", 0)) if item else 0

    def entries(self, tenant_id: str) -> list[SegmentEntry]:
        items = query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=SEGMENT_PREFIX),
            ConsistentRead=True,
        )
        return [
            SegmentEntry(
                document_id=item["sk"][len(SEGMENT_PREFIX) :],
                generation=item["generation"],
                key=item["key"],
                rows=item["rows"],
                model=item["model"],
            )
            for item in items
        ]

    def _load(self, tenant_id: str, previous: TenantIndex | None) -> TenantIndex:
        held = previous.documents if previous else {}
        base = previous or TenantIndex(tenant_id, self._model, self._dimensions)
        for attempt in range(3):
            entries = self.entries(tenant_id)
            keep = {e.document_id for e in entries if held.get(e.document_id) == e.generation}
            missing = [e for e in entries if e.document_id not in keep]
            if previous is not None and not missing and keep == set(held):
                return previous  # the version moved, the documents did not (say, a removal of nothing)
            try:
                # Streamed: each segment is copied into the index and freed before more are fetched.
                index = base.updated(keep, self._stream(tenant_id, missing), sum(e.rows for e in missing))
                break
            except _Superseded:  # a segment was replaced while we read the manifest: read it again
                logger.info("vector segment replaced during load; reloading", extra={"attempt": attempt})
        else:
            raise RuntimeError(f"the vector index of tenant {tenant_id} kept changing while loading")
        _release_freed_memory()
        if index.skipped_vectors:
            logger.warning(
                "documents embedded with another model answer keyword queries only; re-upload them",
                extra={"tenant_id": tenant_id, "documents": list(index.skipped_vectors)[:20]},
            )
        return index

    def _stream(self, tenant_id: str, entries: list[SegmentEntry]) -> Iterator[Segment]:
        """The entries' segments in order, fetched a few at a time in parallel."""

        def fetch(entry: SegmentEntry) -> Segment:
            expected = vectors_prefix(tenant_id, entry.document_id)
            if not entry.key.startswith(expected):
                raise ValueError(f"segment key {entry.key!r} is outside tenant {tenant_id}'s vectors")
            try:
                body = self._s3.get_object(Bucket=self._bucket, Key=entry.key)["Body"].read()
            except ClientError as error:
                if error_code(error) in ("NoSuchKey", "404"):
                    raise _Superseded from error
                raise
            segment = Segment.from_bytes(body)
            if (segment.tenant_id, segment.document_id) != (tenant_id, entry.document_id):
                raise ValueError(f"segment {entry.key!r} belongs to {segment.tenant_id}/{segment.document_id}")
            return segment

        if not entries:
            return
        with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(entries))) as pool:
            in_flight: deque[Future[Segment]] = deque()
            for entry in entries:
                in_flight.append(pool.submit(fetch, entry))
                if len(in_flight) >= 2 * _LOAD_THREADS:
                    yield in_flight.popleft().result()
            while in_flight:
                yield in_flight.popleft().result()

    def _keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def _delete_keys(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})


class _Superseded(Exception):
    """A segment file named by the manifest is gone: a newer generation replaced it."""


class _IndexCache:
    """Warm indexes by tenant, least recently used evicted first once they hold more than `max_rows` rows."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._entries: OrderedDict[str, tuple[int, TenantIndex]] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, tenant_id: str) -> tuple[int, TenantIndex] | None:
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None:
                self._entries.move_to_end(tenant_id)
            return entry

    def loading(self, tenant_id: str) -> threading.Lock:
        """The lock held while a tenant's index loads."""
        with self._lock:
            return self._loading.setdefault(tenant_id, threading.Lock())

    def put(self, tenant_id: str, version: int, index: TenantIndex) -> None:
        with self._lock:
            held = self._entries.get(tenant_id)
            if held is not None and held[0] > version:
                return  # a newer version is cached already: never step back
            self._entries[tenant_id] = (version, index)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > 1 and sum(i.rows for _, i in self._entries.values()) > self._max_rows:
                self._entries.popitem(last=False)


def _release_freed_memory() -> None:
    """Hand the segments' freed buffers back to the OS: glibc keeps them otherwise, and a Lambda's memory
    would stay at the load's peak (about twice the index) for its whole life."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def _load_npz(body: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
        return {name: arrays[name] for name in arrays.files}
