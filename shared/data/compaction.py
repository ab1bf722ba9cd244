"""Compaction: a tenant's documents merged from one segment each into a few packs (docs/decisions/0011).

A tenant that uploads 10,000 small documents has 10,000 segments; a cold index would fetch 10,000 objects. The
ingestion function compacts a tenant when its manifest head says it is due (COMPACT_MIN_DOCUMENTS documents
outside packs, or rows of removed documents inside one): it runs on a `vectors.compact` message of its own
queue, and hands itself another when it runs short of time.

One run, under the tenant's compaction lease (so runs do not overlap; a crashed run's lease expires):
1. Read the manifest and plan: which documents go into new packs (every document not in a pack, and every
   document of a pack that holds rows no longer served, is not partitioned like the rest, or is small), in
   groups of up to PACK_ROWS rows; whether the tenant is large enough to partition (PARTITION_MIN_ROWS), and
   whether its codebook must be trained (first time, or the tenant has doubled since).
2. For each group: read its documents' rows (their own segments, or the old packs), write the new pack to S3
   and its `vpack#` entry, then point each document's entry at it, one conditional update each: only if the
   entry still has the generation that was packed and still names the pack (or none) it named when planned.
   A document uploaded again or removed meanwhile fails that condition and is left alone: its rows in the new
   pack are never served, and the next compaction drops them. Then delete the packed documents' own files.
3. Bump the manifest version (warm indexes switch to the packs), delete packs and codebooks no document points
   at any more, and recount the head's counters.

Every step is safe to repeat and to interleave with publishes and removals: a reader only uses a pack for a
document whose entry names it (and the generation it holds), and a file is deleted only once no entry names it
(a reader that planned with an older manifest gets NoSuchKey and reads the manifest again). So compaction keeps
decision 5's guarantees: a stale ingestion still cannot publish (publish is unchanged), and a removed document
never answers (its entry is gone, whatever a pack still holds).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from botocore.exceptions import ClientError

from shared.data.aws import error_code
from shared.data.dynamo import to_item, values
from shared.data.vectors import (
    COMPACTION_SK,
    MANIFEST_SK,
    PACK_PREFIX,
    SEGMENT_PREFIX,
    Manifest,
    PackEntry,
    S3VectorStore,
    SegmentEntry,
    Superseded,
    codebook_key,
    pack_key,
    packs_prefix,
)
from shared.ids import new_id
from shared.observability import logger
from shared.packs import (
    PACK_ROWS,
    TRAIN_ROWS_PER_PARTITION,
    Codebook,
    Pack,
    partitions_for,
)
from shared.vectors import Segment

LEASE = timedelta(minutes=15)  # a Lambda invocation's longest life
TIME_MARGIN_SECONDS = 60  # no new pack is started with less time than this left
SMALL_PACK_ROWS = PACK_ROWS // 2  # packs this small are merged with others when there is work anyway


@dataclass
class CompactionResult:
    tenant_id: str
    skipped: str | None = None  # why nothing was done
    packs_written: int = 0
    documents_packed: int = 0
    documents_changed: int = 0  # uploaded again or removed during the run: left for the next one
    packs_deleted: int = 0
    codebook_trained: str | None = None
    more: bool = False  # stopped for time: another run should follow


@dataclass
class _Plan:
    groups: list[list[tuple[SegmentEntry, PackEntry | None]]] = field(default_factory=list)
    total_rows: int = 0
    partitions: int = 0  # 0: the packs are not partitioned
    codebook: str = ""  # the codebook to file rows under ("" with retrain, or when not partitioned)
    retrain: bool = False
    sources: list[tuple[SegmentEntry | PackEntry, dict[str, str]]] = field(default_factory=list)


def plan_compaction(manifest: Manifest, model: str, min_documents: int, partition_min_rows: int) -> _Plan:
    """What one compaction of this manifest does (nothing: no groups)."""
    served = manifest.served()
    packs = {pack_id: pack for pack_id, pack in manifest.packs.items() if pack.model == model}
    live = {pack_id: sum(manifest.documents[d].rows for d in served.get(pack_id, {})) for pack_id in packs}
    loose = [
        entry
        for entry in manifest.documents.values()
        if manifest.pack_of(entry) is None and entry.model == model and 0 < entry.rows <= PACK_ROWS
    ]
    plan = _Plan(total_rows=sum(e.rows for e in loose) + sum(live.values()))
    if plan.total_rows >= partition_min_rows:
        plan.partitions = min(partitions_for(plan.total_rows), plan.total_rows // 4)  # (tiny only in tests)
        # The newest codebook in use, unless the tenant has doubled since it was trained; packs of any other
        # are filed again under it (a run stopped for time leaves some).
        partitioned = [packs[p] for p in packs if live[p] and packs[p].codebook]
        newest = max(partitioned, key=lambda pack: (pack.codebook_rows, pack.created_at), default=None)
        plan.retrain = newest is None or plan.total_rows >= 2 * newest.codebook_rows
        plan.codebook = "" if newest is None or plan.retrain else newest.codebook
    rewrite = {
        pack_id
        for pack_id, pack in packs.items()
        if live[pack_id]
        and (plan.retrain or pack.rows > live[pack_id] or (plan.partitions and pack.codebook != plan.codebook))
    }
    if not rewrite and len(loose) < min_documents:
        return plan
    small = [p for p in packs if live[p] and p not in rewrite and live[p] < SMALL_PACK_ROWS]
    if loose or len(small) > 1:
        rewrite |= set(small)
    # Documents in the order of their sources, so that each old pack is read for one group (or two).
    todo: list[tuple[SegmentEntry, PackEntry | None]] = [(e, None) for e in sorted(loose, key=lambda e: e.document_id)]
    for pack_id in sorted(rewrite):
        documents = sorted(served[pack_id])
        todo += [(manifest.documents[d], packs[pack_id]) for d in documents]
        plan.sources.append((packs[pack_id], dict(served[pack_id])))
    plan.sources += [(entry, {entry.document_id: entry.generation}) for entry in loose]
    group: list[tuple[SegmentEntry, PackEntry | None]] = []
    rows = 0
    for entry, pack in todo:
        if group and rows + entry.rows > PACK_ROWS:
            plan.groups.append(group)
            group, rows = [], 0
        group.append((entry, pack))
        rows += entry.rows
    if group:
        plan.groups.append(group)
    return plan


class Compactor:
    def __init__(self, store: S3VectorStore, dynamodb: Any, table: str, s3: Any, bucket: str) -> None:
        self._store = store
        self._db = dynamodb
        self._table = table
        self._s3 = s3
        self._bucket = bucket

    def compact(self, tenant_id: str, now: datetime, time_left: Callable[[], float] | None = None) -> CompactionResult:
        owner = new_id("c")
        if not self._take_lease(tenant_id, owner, now):
            return CompactionResult(tenant_id, skipped="another compaction of this tenant is running")
        try:
            return self._run(tenant_id, now, time_left)
        finally:
            self._release_lease(tenant_id, owner)

    def _run(self, tenant_id: str, now: datetime, time_left: Callable[[], float] | None) -> CompactionResult:
        result = CompactionResult(tenant_id)
        manifest = self._store.manifest(tenant_id)
        store = self._store
        plan = plan_compaction(manifest, store.model, store.compact_min_documents, store.partition_min_rows)
        if not plan.groups:
            result.skipped = "nothing to compact"
            self._tidy(tenant_id, result)
            return result
        codebook = None
        if plan.retrain:
            codebook = self._train(tenant_id, plan)
            result.codebook_trained = codebook.codebook_id
        elif plan.codebook:
            codebook = Codebook.from_bytes(self._store.read_object(codebook_key(tenant_id, plan.codebook)))
        loose_pointed = 0
        reader = _SourceReader(self._store, tenant_id)
        for group in plan.groups:
            if time_left is not None and time_left() < TIME_MARGIN_SECONDS:
                result.more = True
                break
            segments = reader.segments(group)
            read = {segment.document_id for segment in segments}
            result.documents_changed += len(group) - len(read)
            group = [item for item in group if item[0].document_id in read]
            if not group:
                continue
            pack = Pack.build(tenant_id, new_id("p"), self._store.model, segments, codebook)
            self._write_pack(tenant_id, pack, codebook, now)
            pointed = self._point(tenant_id, pack.pack_id, group)
            result.packs_written += 1
            result.documents_packed += len(pointed)
            result.documents_changed += len(group) - len(pointed)
            # Their own files: no entry names them now (an entry uploaded again names its new generation's file).
            own = [entry.key for entry, source in group if source is None and entry.document_id in pointed]
            loose_pointed += len(own)
            self._store.delete_keys(own)
        reader.close()
        if result.documents_packed:
            self._db.transact_write_items(
                TransactItems=[self._store.bump_version(tenant_id, loose_documents=-loose_pointed)]
            )
        self._tidy(tenant_id, result)
        logger.info("vectors compacted", extra={**result.__dict__})
        return result

    def _train(self, tenant_id: str, plan: _Plan) -> Codebook:
        """A codebook for the tenant, trained on rows sampled from all of its files, and written to S3.

        Every file gives a few rows: a document is about one topic or a few, so whole documents would sample a
        few topics (a 60k-row test of bench/retrieval.py found 0.72 recall@10 that way, 0.98 this way). It reads
        everything once more than the packing does; training is rare (the tenant must double first)."""
        target = TRAIN_ROWS_PER_PARTITION * plan.partitions
        seed = int.from_bytes(hashlib.blake2b(tenant_id.encode(), digest_size=4).digest(), "little")
        rng = np.random.default_rng(seed)
        share = min(1.0, target / plan.total_rows)
        reader = _SourceReader(self._store, tenant_id)
        sample: list[np.ndarray] = []
        for segments in reader.read_all(plan.sources):
            codes = np.concatenate([s.codes for s in segments])
            take = min(len(codes), int(rng.binomial(len(codes), share)) or 1)
            sample.append(codes[np.sort(rng.choice(len(codes), take, replace=False))].astype(np.float32))
        reader.close()
        codebook = Codebook.train(
            new_id("b"), tenant_id, np.concatenate(sample), plan.partitions, plan.total_rows, seed
        )
        body = codebook.to_bytes()
        self._s3.put_object(Bucket=self._bucket, Key=codebook_key(tenant_id, codebook.codebook_id), Body=body)
        return codebook

    def _write_pack(self, tenant_id: str, pack: Pack, codebook: Codebook | None, now: datetime) -> None:
        key = pack_key(tenant_id, pack.pack_id)
        body = pack.to_bytes()
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=body)
        entry = {
            "pk": tenant_id,
            "sk": PACK_PREFIX + pack.pack_id,
            "key": key,
            "rows": pack.rows,
            "bytes": len(body),
            "model": pack.model,
            "codebook": pack.codebook_id,
            "codebook_rows": codebook.trained_rows if codebook is not None else 0,
            "documents": len(pack.documents),
            "created_at": now.isoformat(),
        }
        self._db.put_item(TableName=self._table, Item=to_item(entry))

    def _point(self, tenant_id: str, pack_id: str, group: list[tuple[SegmentEntry, PackEntry | None]]) -> set[str]:
        """Point each document's entry at the pack, if it is still what was packed; the documents pointed."""

        def point(item: tuple[SegmentEntry, PackEntry | None]) -> str | None:
            entry, _ = item
            condition = "generation = :generation AND model = :model AND "
            condition += "attribute_not_exists(pack)" if entry.pack is None else "pack = :old"
            names = values(pack=pack_id, generation=entry.generation, model=entry.model)
            if entry.pack is not None:
                names.update(values(old=entry.pack))
            try:
                self._db.update_item(
                    TableName=self._table,
                    Key=to_item({"pk": tenant_id, "sk": SEGMENT_PREFIX + entry.document_id}),
                    UpdateExpression="SET pack = :pack",
                    ConditionExpression=condition,
                    ExpressionAttributeValues=names,
                )
            except ClientError as error:
                if error_code(error) == "ConditionalCheckFailedException":
                    return None  # uploaded again, removed, or packed by someone else meanwhile
                raise
            return entry.document_id

        with ThreadPoolExecutor(max_workers=self._store.write_concurrency) as pool:
            return {document for document in pool.map(point, group) if document is not None}

    def _tidy(self, tenant_id: str, result: CompactionResult) -> None:
        """Delete packs and codebooks nothing points at; set the head's counters to what the manifest says."""
        head = self._store.head(tenant_id)
        manifest = self._store.manifest(tenant_id)
        served = manifest.served()
        for pack_id in manifest.packs:
            if pack_id not in served:
                self._db.delete_item(TableName=self._table, Key=to_item({"pk": tenant_id, "sk": PACK_PREFIX + pack_id}))
                result.packs_deleted += 1
        used = {manifest.packs[p].key for p in served} | {
            codebook_key(tenant_id, manifest.packs[p].codebook) for p in served if manifest.packs[p].codebook
        }
        self._store.delete_keys(k for k in self._store.keys(packs_prefix(tenant_id)) if k not in used)
        loose = sum(
            1
            for e in manifest.documents.values()
            if manifest.pack_of(e) is None and e.model == self._store.model and 0 < e.rows <= PACK_ROWS
        )
        dead = sum(manifest.packs[p].rows for p in served) - sum(
            manifest.documents[d].rows for documents in served.values() for d in documents
        )
        try:  # only if nothing was published or removed since the head was read
            self._db.update_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": MANIFEST_SK}),
                UpdateExpression="SET loose_documents = :loose, dead_rows = :dead",
                ConditionExpression="#version = :version",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues=values(loose=loose, dead=dead, version=head["version"]),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise

    def _take_lease(self, tenant_id: str, owner: str, now: datetime) -> bool:
        try:
            self._db.put_item(
                TableName=self._table,
                Item=to_item(
                    {"pk": tenant_id, "sk": COMPACTION_SK, "owner": owner, "until": int((now + LEASE).timestamp())}
                ),
                ConditionExpression="attribute_not_exists(pk) OR #until < :now",
                ExpressionAttributeNames={"#until": "until"},
                ExpressionAttributeValues=values(now=int(now.timestamp())),
            )
        except ClientError as error:
            if error_code(error) == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _release_lease(self, tenant_id: str, owner: str) -> None:
        try:
            self._db.delete_item(
                TableName=self._table,
                Key=to_item({"pk": tenant_id, "sk": COMPACTION_SK}),
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues=values(owner=owner),
            )
        except ClientError as error:
            if error_code(error) != "ConditionalCheckFailedException":
                raise


class _SourceReader:
    """Documents' segments read from their own files or from packs (the last pack read is kept for the next
    group, as a group's documents come in the order of their packs)."""

    def __init__(self, store: S3VectorStore, tenant_id: str) -> None:
        self._store = store
        self._tenant_id = tenant_id
        self._pack: tuple[str, Pack] | None = None
        self._pool = ThreadPoolExecutor(max_workers=8)

    def read(self, source: SegmentEntry | PackEntry, wanted: dict[str, str]) -> list[Segment]:
        if isinstance(source, PackEntry):
            return list(self._pack_of(source).segments(wanted))
        return [self._store.read_segment(self._tenant_id, source)]

    def read_all(self, sources: list[tuple[SegmentEntry | PackEntry, dict[str, str]]]) -> Iterator[list[Segment]]:
        """Each source's segments in turn: documents' own files several at a time, packs one at a time."""
        own = [source for source, _ in sources if not isinstance(source, PackEntry)]
        for source, wanted in sources:
            if isinstance(source, PackEntry):
                yield self.read(source, wanted)
        yield from ([s] for s in self._pool.map(lambda e: self._store.read_segment(self._tenant_id, e), own))

    def segments(self, group: list[tuple[SegmentEntry, PackEntry | None]]) -> list[Segment]:
        """The group's documents' segments; a document whose own file is gone (uploaded again or removed since
        the plan) is left out."""

        def own(entry: SegmentEntry) -> Segment | None:
            try:
                return self._store.read_segment(self._tenant_id, entry)
            except Superseded:
                return None

        found = [s for s in self._pool.map(own, [entry for entry, pack in group if pack is None]) if s is not None]
        by_pack: dict[str, tuple[PackEntry, dict[str, str]]] = {}
        for entry, pack in group:
            if pack is not None:
                by_pack.setdefault(pack.pack_id, (pack, {}))[1][entry.document_id] = entry.generation
        for pack, wanted in by_pack.values():
            found.extend(self._pack_of(pack).segments(wanted))
        return found

    def _pack_of(self, entry: PackEntry) -> Pack:
        if self._pack is None or self._pack[0] != entry.pack_id:
            self._pack = None  # freed before the next is read
            body = self._store.read_objects([(entry.key, entry.bytes)])[entry.key]
            pack = Pack.from_bytes(body)
            if (pack.tenant_id, pack.pack_id) != (self._tenant_id, entry.pack_id):
                raise ValueError(f"pack {entry.key!r} belongs to {pack.tenant_id}/{pack.pack_id}")
            self._pack = (entry.pack_id, pack)
        return self._pack[1]

    def close(self) -> None:
        self._pack = None
        self._pool.shutdown()
