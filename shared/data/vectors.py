"""The S3 + DynamoDB vector store: segments in S3, a manifest per tenant in DynamoDB, a warm index in memory.

Layout:
- S3 `vectors/<tenant>/<document>/<generation>.seg`: a document's segment (shared/vectors.py), written once.
- S3 `vectors/<tenant>/<document>/<generation>/part-<start>.npz`: vectors of an ingestion still running.
- S3 `vectors/<tenant>/_packs/<pack>.pack`: many documents' rows, written by compaction (shared/packs.py);
  `vectors/<tenant>/_packs/<codebook>.codebook`: the partition centroids its rows are filed under.
- documents table, pk = tenant:
  - sk `index`: the manifest head, {version, loose_documents, dead_rows}; every publish or removal adds one to
    the version; the two counters tell ingestion when compaction is due;
  - sk `vseg#<document>`: the document's current segment {generation, key, rows, model}, and `pack` once
    compaction has put its rows in a pack: the manifest says which pack serves each document;
  - sk `vpack#<pack>`: a pack {key, rows, bytes, model, codebook, codebook_rows, documents, created_at};
  - sk `vcompact`: the lease of the compaction running, if any.

A reader compares the manifest version with the one its warm index was built at (one consistent GetItem a
query) and, when it moved, loads only what it does not hold yet: new segments, new packs. Nothing here is
shared between tenants: keys are built from the tenant id, and every segment and pack says whose it is.

Compaction (shared/data/compaction.py) merges documents' segments into packs. It never changes what a search
finds: a pack serves a document only while the document's manifest entry names the pack and the generation
the pack holds, so a document removed or uploaded again is left out of every search at once, and its rows are
dropped from the pack by the next compaction.

Another store (S3 Vectors, OpenSearch Serverless) can replace this one by implementing the same three
methods, `publish`, `remove` and `search` (see shared/retrieval.py and docs/decisions/0005-retrieval.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import itertools
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.data.documents import DOC_PREFIX
from shared.data.dynamo import cancellation_codes, from_item, query_all, to_item, values
from shared.errors import NotFound, ServiceUnavailable
from shared.observability import logger
from shared.packs import PARTITION_MIN_ROWS, Codebook, Pack, PackPart, PackView
from shared.vectors import Hit, Segment, TenantIndex

if TYPE_CHECKING:
    from shared.data.compaction import CompactionResult

MANIFEST_SK = "index"
SEGMENT_PREFIX = "vseg#"
PACK_PREFIX = "vpack#"
COMPACTION_SK = "vcompact"
# Segments fetched at once, and the threads that fetch packs, whole or in byte ranges (S3 serves each connection
# at a fraction of what the function's network can take: many connections at once is how a large read gets it).
_LOAD_THREADS = 16
_RANGE_BYTES = 8 * 2**20  # the smallest range worth its own request
_READ_CHUNK = 2**20
# Compaction is due when this many documents are not in a pack yet, or a pack holds rows no longer served.
COMPACT_MIN_DOCUMENTS = 32


def vectors_prefix(tenant_id: str, document_id: str) -> str:
    return f"vectors/{tenant_id}/{document_id}/"


def segment_key(tenant_id: str, document_id: str, generation: str) -> str:
    return f"{vectors_prefix(tenant_id, document_id)}{generation}.seg"


def part_key(tenant_id: str, document_id: str, generation: str, start: int) -> str:
    return f"{vectors_prefix(tenant_id, document_id)}{generation}/part-{start:06d}.npz"


def packs_prefix(tenant_id: str) -> str:
    """Where a tenant's packs and codebooks live (document ids never start with "_")."""
    return f"vectors/{tenant_id}/_packs/"


def pack_key(tenant_id: str, pack_id: str) -> str:
    return f"{packs_prefix(tenant_id)}{pack_id}.pack"


def codebook_key(tenant_id: str, codebook_id: str) -> str:
    return f"{packs_prefix(tenant_id)}{codebook_id}.codebook"


@dataclass(frozen=True)
class SegmentEntry:
    document_id: str
    generation: str
    key: str
    rows: int
    model: str
    pack: str | None = None  # the pack holding its rows, once compacted


@dataclass(frozen=True)
class PackEntry:
    pack_id: str
    key: str
    rows: int
    bytes: int
    model: str
    codebook: str  # "" when its rows are not partitioned
    codebook_rows: int  # the rows its codebook was trained for
    documents: int
    created_at: str


@dataclass(frozen=True)
class Manifest:
    """A tenant's segment and pack entries, as one query read them."""

    documents: dict[str, SegmentEntry]
    packs: dict[str, PackEntry]

    def pack_of(self, entry: SegmentEntry) -> PackEntry | None:
        """The pack serving a document: the one its entry names, if that pack's entry exists."""
        return self.packs.get(entry.pack) if entry.pack else None

    def served(self) -> dict[str, dict[str, str]]:
        """Pack id -> the documents (id -> generation) it serves."""
        served: dict[str, dict[str, str]] = {}
        for entry in self.documents.values():
            if self.pack_of(entry) is not None:
                assert entry.pack is not None
                served.setdefault(entry.pack, {})[entry.document_id] = entry.generation
        return served


@dataclass(frozen=True)
class SearchHits:
    vector: list[Hit]
    keyword: list[Hit]


class IndexTooLarge(ServiceUnavailable):
    """A tenant's index has more rows than this function may hold (DOCUCHAT_INDEX_CACHE_ROWS)."""

    code = "index_too_large"


@dataclass
class _LoadPlan:
    partitioned: dict[str, tuple[PackEntry, dict[str, str]]]  # pack id -> (entry, documents it serves)
    keep: set[str]  # flat documents copied from the previous index
    units: list[tuple[SegmentEntry | PackEntry, dict[str, str]]]  # what to fetch for the flat part, and for whom
    added_rows: int
    held_rows: int
    unchanged: bool = False


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
        write_concurrency: int = 8,
        version_trust_seconds: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = bucket
        self._model = model
        self._dimensions = dimensions
        self._cache = _IndexCache(cache_rows)
        # How long a warm index is used without reading the manifest's version again (decision 17).
        self.version_trust_seconds = version_trust_seconds
        self._clock = clock
        self.write_concurrency = write_concurrency  # compaction's manifest updates at once (moto: 1)
        # When compaction is due, and when it partitions (attributes, so tests can make them small).
        self.compact_min_documents = COMPACT_MIN_DOCUMENTS
        self.partition_min_rows = PARTITION_MIN_ROWS

    @property
    def model(self) -> str:
        return self._model

    @property
    def dimensions(self) -> int:
        return self._dimensions

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
        parts: dict[int, str] = {int(key[len(prefix) : -len(".npz")]): key for key in self.keys(prefix)}
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
                    self.bump_version(segment.tenant_id, loose_documents=1),
                ]
            )
        except ClientError as error:
            if "ConditionalCheckFailed" in cancellation_codes(error):
                self.delete_keys([key])
                raise NotFound(f"document {segment.document_id} is no longer processing this upload") from error
            raise
        # Earlier generations' segments, and this one's parts. (Readers holding the old manifest may still fetch
        # an old segment for a moment; they reload on NoSuchKey.) Parts of a newer upload are left alone.
        prefix = vectors_prefix(segment.tenant_id, segment.document_id)
        own_parts = f"{prefix}{segment.generation}/"
        self.delete_keys(k for k in self.keys(prefix) if (k.endswith(".seg") and k != key) or k.startswith(own_parts))

    def remove(self, tenant_id: str, document_id: str) -> None:
        """Take a document out of the index, then delete its vector files. Safe to repeat.

        The manifest version moves only when there was a segment, so warm indexes are not rebuilt for nothing.
        A document in a pack is out of every search from that moment; its rows leave the pack at the next
        compaction, which the head's `dead_rows` makes due.
        """
        entry_key = to_item({"pk": tenant_id, "sk": SEGMENT_PREFIX + document_id})
        for _ in range(5):  # compaction may point the entry at a pack between our read and our delete
            item = self._db.get_item(TableName=self._table, Key=entry_key, ConsistentRead=True).get("Item")
            if item is None:
                break
            entry = from_item(item)
            if self._remove_entry(tenant_id, document_id, entry.get("pack"), int(entry["rows"])):
                break
        else:
            raise ServiceUnavailable(f"the vector entry of document {document_id} kept changing; try again")
        self.delete_keys(self.keys(vectors_prefix(tenant_id, document_id)))

    def _remove_entry(self, tenant_id: str, document_id: str, pack: str | None, rows: int) -> bool:
        """Delete the entry if it is still in or out of `pack` as read; False when it changed meanwhile."""
        condition = "attribute_not_exists(pack)" if pack is None else "pack = :pack"
        delete: dict[str, Any] = {
            "TableName": self._table,
            "Key": to_item({"pk": tenant_id, "sk": SEGMENT_PREFIX + document_id}),
            "ConditionExpression": condition,
        }
        if pack is not None:
            delete["ExpressionAttributeValues"] = values(pack=pack)
        counts = {"loose_documents": -1} if pack is None else {"dead_rows": rows}
        try:
            self._db.transact_write_items(TransactItems=[{"Delete": delete}, self.bump_version(tenant_id, **counts)])
        except ClientError as error:
            if "ConditionalCheckFailed" in cancellation_codes(error):
                return False
            raise
        return True

    def bump_version(self, tenant_id: str, **counts: int) -> dict[str, Any]:
        """A transaction item adding one to the manifest version (and `counts` to the head's counters)."""
        additions = ", ".join(["#version :one", *(f"{name} :{name}" for name in counts)])
        return {
            "Update": {
                "TableName": self._table,
                "Key": to_item({"pk": tenant_id, "sk": MANIFEST_SK}),
                "UpdateExpression": f"ADD {additions}",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": values(one=1, **counts),
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

        An index whose version was confirmed less than `version_trust_seconds` ago (DOCUCHAT_INDEX_TRUST_SECONDS)
        is used without reading the manifest: a new document then answers that much later in a warm function. A
        removed document is not cited meanwhile: its chunks' text is deleted with it, and retrieval drops a
        passage whose text is gone.
        """
        now = self._clock()
        cached = self._cache.get(tenant_id)
        if cached is not None and now - cached.confirmed_at < self.version_trust_seconds:
            return cached.index
        version = self.manifest_version(tenant_id)
        if cached is not None and cached.version >= version:
            self._cache.confirm(tenant_id, now)
            return cached.index
        with self._cache.loading(tenant_id):
            cached = self._cache.get(tenant_id)
            if cached is not None and cached.version >= version:  # loaded by another thread while this one waited
                return cached.index
            index = self._load(tenant_id, cached.index if cached else None)
            self._cache.put(tenant_id, version, index, now)
            return index

    def head(self, tenant_id: str) -> dict[str, int]:
        """The manifest head: version, loose_documents, dead_rows (0 when absent)."""
        item = self._db.get_item(
            TableName=self._table, Key=to_item({"pk": tenant_id, "sk": MANIFEST_SK}), ConsistentRead=True
        ).get("Item")
        held = from_item(item) if item else {}
        return {name: int(held.get(name, 0)) for name in ("version", "loose_documents", "dead_rows")}

    def manifest_version(self, tenant_id: str) -> int:
        return self.head(tenant_id)["version"]

    def compaction_due(self, tenant_id: str) -> bool:
        """Whether enough documents wait outside packs, or a pack holds rows no longer served (one GetItem)."""
        head = self.head(tenant_id)
        return head["loose_documents"] >= self.compact_min_documents or head["dead_rows"] > 0

    def entries(self, tenant_id: str) -> list[SegmentEntry]:
        return list(self.manifest(tenant_id).documents.values())

    def manifest(self, tenant_id: str, prefix: str = "v") -> Manifest:
        """Every segment and pack entry of the tenant, in one query (or those whose sort key has `prefix`)."""
        documents: dict[str, SegmentEntry] = {}
        packs: dict[str, PackEntry] = {}
        for item in query_all(
            self._db,
            TableName=self._table,
            KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
            ExpressionAttributeValues=values(tenant=tenant_id, prefix=prefix),
            ConsistentRead=True,
        ):
            sk = item["sk"]
            if sk.startswith(SEGMENT_PREFIX):
                document_id = sk[len(SEGMENT_PREFIX) :]
                documents[document_id] = SegmentEntry(
                    document_id=document_id,
                    generation=item["generation"],
                    key=item["key"],
                    rows=item["rows"],
                    model=item["model"],
                    pack=item.get("pack"),
                )
            elif sk.startswith(PACK_PREFIX):
                pack_id = sk[len(PACK_PREFIX) :]
                packs[pack_id] = PackEntry(
                    pack_id=pack_id,
                    key=item["key"],
                    rows=item["rows"],
                    bytes=item["bytes"],
                    model=item["model"],
                    codebook=item.get("codebook", ""),
                    codebook_rows=item.get("codebook_rows", 0),
                    documents=item.get("documents", 0),
                    created_at=item.get("created_at", ""),
                )
        return Manifest(documents, packs)

    def _load(self, tenant_id: str, previous: TenantIndex | None) -> TenantIndex:
        base = previous or TenantIndex(tenant_id, self._model, self._dimensions)
        for attempt in range(5):  # a compaction running may move documents between our two reads
            # The packs first (a few entries), fetched while the documents' entries (up to one per document:
            # 10,000 take about a second) are read; then the plan, which uses what was fetched.
            packs = self.manifest(tenant_id, PACK_PREFIX).packs
            with _Prefetch(self, tenant_id, self._new_packs(packs, previous)) as prefetched:
                manifest = Manifest(self.manifest(tenant_id, SEGMENT_PREFIX).documents, packs)
                plan = self._plan(tenant_id, manifest, previous)
                if previous is not None and plan.unchanged:
                    return previous  # the version moved, the documents did not (say, a removal of nothing)
                try:
                    self._cache.make_room(tenant_id, plan.held_rows)
                    views = self._pack_views(tenant_id, plan, previous, prefetched)
                    # Streamed: each segment is copied into the index and freed before more are fetched.
                    units = self._stream(tenant_id, plan.units)
                    index = base.updated(plan.keep, units, plan.added_rows, packs=views)
                    break
                except Superseded:  # a segment or pack was replaced while we read the manifest: read it again
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

    def _plan(self, tenant_id: str, manifest: Manifest, previous: TenantIndex | None) -> _LoadPlan:
        """What the new index holds: partitioned packs as views, every other document in the flat part."""
        partitioned: dict[str, tuple[PackEntry, dict[str, str]]] = {}
        flat: dict[str, tuple[SegmentEntry, PackEntry | None]] = {}
        for entry in manifest.documents.values():
            pack = manifest.pack_of(entry)
            if pack is not None and pack.codebook and pack.model == self._model:
                partitioned.setdefault(pack.pack_id, (pack, {}))[1][entry.document_id] = entry.generation
            else:
                flat[entry.document_id] = (entry, pack)
        held_flat = previous.flat_documents if previous else {}
        keep = {document for document, (entry, _) in flat.items() if held_flat.get(document) == entry.generation}
        units: dict[str, tuple[SegmentEntry | PackEntry, dict[str, str]]] = {}
        added_rows = 0
        for document, (entry, pack) in flat.items():
            if document in keep:
                continue
            added_rows += entry.rows
            source: SegmentEntry | PackEntry = pack if pack is not None else entry
            unit_key = pack.pack_id if pack is not None else SEGMENT_PREFIX + document
            units.setdefault(unit_key, (source, {}))[1][document] = entry.generation
        held_packs = previous.packs if previous else {}
        unchanged = (
            not units
            and keep == set(held_flat)
            and set(partitioned) == set(held_packs)
            and all(dict(held_packs[p].served) == served for p, (_, served) in partitioned.items())
        )
        held_rows = sum(entry.rows for entry, _ in flat.values()) + sum(p.rows for p, _ in partitioned.values())
        return _LoadPlan(partitioned, keep, list(units.values()), added_rows, held_rows, unchanged)

    def _new_packs(self, packs: dict[str, PackEntry], previous: TenantIndex | None) -> list[PackEntry]:
        """The partitioned packs of this model the index does not hold: the ones a load will likely fetch."""
        held = previous.packs if previous else {}
        return [p for p in packs.values() if p.codebook and p.model == self._model and p.pack_id not in held]

    def _pack_views(
        self, tenant_id: str, plan: _LoadPlan, previous: TenantIndex | None, prefetched: _Prefetch
    ) -> list[PackView]:
        """A view of every partitioned pack the plan names: parts held already are reused, the others fetched
        (most of them by `prefetched` already)."""
        held = previous.packs if previous else {}
        codebooks = {view.part.codebook.codebook_id: view.part.codebook for view in held.values()}
        wanted = [entry for entry, _ in plan.partitioned.values() if entry.pack_id not in held]
        for entry in wanted:
            if not entry.key.startswith(packs_prefix(tenant_id)):
                raise ValueError(f"pack key {entry.key!r} is outside tenant {tenant_id}'s vectors")
        missing_codebooks = sorted({e.codebook for e in wanted} - set(codebooks))
        bodies = prefetched.result()
        keys: list[tuple[str, int | None]] = [(codebook_key(tenant_id, c), None) for c in missing_codebooks]
        keys += [(e.key, e.bytes) for e in wanted]
        bodies.update(self.read_objects([(key, size) for key, size in keys if key not in bodies]))
        for codebook_id in missing_codebooks:
            codebook = Codebook.from_bytes(bodies.pop(codebook_key(tenant_id, codebook_id)))
            if (codebook.tenant_id, codebook.codebook_id) != (tenant_id, codebook_id):
                raise ValueError(f"codebook {codebook_id} belongs to {codebook.tenant_id}/{codebook.codebook_id}")
            codebooks[codebook_id] = codebook
        views = []
        for pack_id, (entry, served) in plan.partitioned.items():
            if pack_id in held:
                part = held[pack_id].part
                view = held[pack_id] if dict(held[pack_id].served) == served else PackView.of(part, served)
            else:
                pack = Pack.from_bytes(bodies.pop(entry.key))
                if (pack.tenant_id, pack.pack_id) != (tenant_id, pack_id):
                    raise ValueError(f"pack {entry.key!r} belongs to {pack.tenant_id}/{pack.pack_id}")
                view = PackView.of(PackPart(pack, codebooks[pack.codebook_id]), served)
            views.append(view)
        return views

    def _stream(
        self, tenant_id: str, units: list[tuple[SegmentEntry | PackEntry, dict[str, str]]]
    ) -> Iterator[Segment]:
        """The flat part's segments (from their own files, or from flat packs), fetched a few at a time in parallel."""

        def fetch(unit: tuple[SegmentEntry | PackEntry, dict[str, str]]) -> list[Segment]:
            source, wanted = unit
            if isinstance(source, PackEntry):
                return self.read_pack(tenant_id, source, wanted)
            return [self.read_segment(tenant_id, source)]

        if not units:
            return
        with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(units))) as pool:
            in_flight: deque[Future[list[Segment]]] = deque()
            for unit in units:
                in_flight.append(pool.submit(fetch, unit))
                if len(in_flight) >= 2 * _LOAD_THREADS:
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()

    def read_segment(self, tenant_id: str, entry: SegmentEntry) -> Segment:
        """A document's own segment, checked to be the tenant's and the document's."""
        if not entry.key.startswith(vectors_prefix(tenant_id, entry.document_id)):
            raise ValueError(f"segment key {entry.key!r} is outside tenant {tenant_id}'s vectors")
        segment = Segment.from_bytes(self.read_object(entry.key))
        if (segment.tenant_id, segment.document_id) != (tenant_id, entry.document_id):
            raise ValueError(f"segment {entry.key!r} belongs to {segment.tenant_id}/{segment.document_id}")
        return segment

    def read_pack(self, tenant_id: str, entry: PackEntry, wanted: Mapping[str, str]) -> list[Segment]:
        """The `wanted` documents' segments out of a pack, checked to be the tenant's and to hold them."""
        if not entry.key.startswith(packs_prefix(tenant_id)):
            raise ValueError(f"pack key {entry.key!r} is outside tenant {tenant_id}'s vectors")
        pack = Pack.from_bytes(self.read_object(entry.key))
        if (pack.tenant_id, pack.pack_id) != (tenant_id, entry.pack_id):
            raise ValueError(f"pack {entry.key!r} belongs to {pack.tenant_id}/{pack.pack_id}")
        segments = list(pack.segments(wanted))
        if len(segments) != len(wanted):
            raise ValueError(f"pack {entry.pack_id} does not hold every document its manifest entries say")
        return segments

    def read_object(self, key: str) -> bytes:
        try:
            body: bytes = self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                raise Superseded from error
            raise
        return body

    def read_objects(self, keys: list[tuple[str, int | None]]) -> dict[str, memoryview]:
        """Objects read in byte ranges, many at once, each straight into a buffer of its size (so a read never
        holds an object twice). A size of None: one plain GET."""
        buffers: dict[str, memoryview] = {}
        ranges: list[tuple[str, int, int]] = []
        # As many connections as threads, with as few requests as that allows: whole objects when there are at
        # least as many as threads, else about _LOAD_THREADS even ranges (none under _RANGE_BYTES).
        sizes = [size for _, size in keys if size is not None]
        even = max(_RANGE_BYTES, -(-sum(sizes) // _LOAD_THREADS))
        piece = max(sizes) if len(sizes) >= _LOAD_THREADS else even
        for key, size in keys:
            if size is None:
                buffers[key] = memoryview(self.read_object(key))
                continue
            buffers[key] = memoryview(np.empty(size, dtype=np.uint8))  # type: ignore[arg-type]
            count = -(-size // piece)
            bounds = [size * n // count for n in range(count + 1)]
            ranges += [(key, start, end) for start, end in itertools.pairwise(bounds)]
        if ranges:
            with ThreadPoolExecutor(max_workers=min(_LOAD_THREADS, len(ranges))) as pool:
                for done in [pool.submit(self._read_range, key, buffers[key], a, b) for key, a, b in ranges]:
                    done.result()
        return buffers

    def _read_range(self, key: str, buffer: memoryview, start: int, end: int) -> None:
        try:
            body = self._s3.get_object(Bucket=self._bucket, Key=key, Range=f"bytes={start}-{end - 1}")["Body"]
        except ClientError as error:
            if error_code(error) in ("NoSuchKey", "404"):
                raise Superseded from error
            raise
        cursor = start
        while chunk := body.read(_READ_CHUNK):
            buffer[cursor : cursor + len(chunk)] = chunk
            cursor += len(chunk)
        if cursor != end:
            raise RuntimeError(f"{key}: bytes {start}-{end} came back short ({cursor - start})")

    # Compaction (shared/data/compaction.py)
    def compact(self, tenant_id: str, now: datetime, time_left: Callable[[], float] | None = None) -> CompactionResult:
        """Merge the tenant's loose segments (and packs holding rows no longer served) into packs. Safe to
        repeat and to run beside publishes and removals; see shared/data/compaction.py."""
        from shared.data.compaction import Compactor

        return Compactor(self, self._db, self._table, self._s3, self._bucket).compact(tenant_id, now, time_left)

    def keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=self._bucket, Prefix=prefix):
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def delete_keys(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        for start in range(0, len(keys), 1000):
            batch = [{"Key": key} for key in keys[start : start + 1000]]
            self._s3.delete_objects(Bucket=self._bucket, Delete={"Objects": batch, "Quiet": True})


class _Prefetch:
    """Packs (and their codebooks) read in the background while the caller goes on; `result()` waits for them.
    A pack that is gone meanwhile is left out: the caller fetches what it needs and is not there."""

    def __init__(self, store: S3VectorStore, tenant_id: str, packs: list[PackEntry]) -> None:
        keys: list[tuple[str, int | None]] = [
            (codebook_key(tenant_id, c), None) for c in sorted({p.codebook for p in packs})
        ]
        keys += [(pack.key, pack.bytes) for pack in packs if pack.key.startswith(packs_prefix(tenant_id))]
        self._pool = ThreadPoolExecutor(max_workers=1)
        self._future: Future[dict[str, memoryview]] | None = None
        if packs:
            store._cache.make_room(tenant_id, sum(p.rows for p in packs))  # before the memory is taken
            self._future = self._pool.submit(store.read_objects, keys)

    def result(self) -> dict[str, memoryview]:
        if self._future is None:
            return {}
        try:
            return dict(self._future.result())
        except Superseded:
            return {}

    def __enter__(self) -> _Prefetch:
        return self

    def __exit__(self, *_: object) -> None:
        self._pool.shutdown(wait=True)  # nothing is left reading into buffers nobody holds
        self._future = None


class Superseded(Exception):
    """A file named by the manifest is gone: a newer generation, or a compaction, replaced it."""


@dataclass(frozen=True)
class _Cached:
    version: int  # the manifest version the index was built at
    index: TenantIndex
    confirmed_at: float  # when the manifest was last read and still had this version (monotonic seconds)


class _IndexCache:
    """Warm indexes by tenant, least recently used evicted first once they hold more than `max_rows` rows.

    A tenant's index is never loaded past `max_rows` (IndexTooLarge), and others are evicted before it loads, so
    the function's memory holds at most `max_rows` rows of indexes (plus the one being replaced)."""

    def __init__(self, max_rows: int) -> None:
        self._max_rows = max_rows
        self._entries: OrderedDict[str, _Cached] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, tenant_id: str) -> _Cached | None:
        with self._lock:
            entry = self._entries.get(tenant_id)
            if entry is not None:
                self._entries.move_to_end(tenant_id)
            return entry

    def loading(self, tenant_id: str) -> threading.Lock:
        """The lock held while a tenant's index loads."""
        with self._lock:
            return self._loading.setdefault(tenant_id, threading.Lock())

    def make_room(self, tenant_id: str, rows: int) -> None:
        """Evict other tenants' indexes until `rows` more fit; refuse an index larger than the whole cache."""
        if rows > self._max_rows:
            raise IndexTooLarge(
                f"tenant {tenant_id}'s index has {rows:,} rows; this function holds at most {self._max_rows:,} "
                "(DOCUCHAT_INDEX_CACHE_ROWS, set from its memory)"
            )
        with self._lock:
            others = [t for t in self._entries if t != tenant_id]
            while others and self._held(exclude=tenant_id) + rows > self._max_rows:
                self._entries.pop(others.pop(0))

    def confirm(self, tenant_id: str, at: float) -> None:
        """The manifest still has the cached version, as read at `at`."""
        with self._lock:
            held = self._entries.get(tenant_id)
            if held is not None:
                self._entries[tenant_id] = _Cached(held.version, held.index, max(held.confirmed_at, at))

    def put(self, tenant_id: str, version: int, index: TenantIndex, confirmed_at: float) -> None:
        with self._lock:
            held = self._entries.get(tenant_id)
            if held is not None and held.version > version:
                return  # a newer version is cached already: never step back
            self._entries[tenant_id] = _Cached(version, index, confirmed_at)
            self._entries.move_to_end(tenant_id)
            while len(self._entries) > 1 and self._held() > self._max_rows:
                self._entries.popitem(last=False)

    def _held(self, exclude: str | None = None) -> int:
        return sum(entry.index.held_rows for tenant, entry in self._entries.items() if tenant != exclude)


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
