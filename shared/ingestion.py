"""Ingestion: parse an uploaded document, chunk it, embed the chunks in batches, publish them to the index.

The work is resumable, so a document of any size fits Lambda's limits:

    parsing   -> the text is chunked and the chunks stored (DynamoDB)
    embedding -> batch after batch: embed, meter the tokens, store the vectors (S3 part), record progress
    indexing  -> the parts become the document's segment, published to the tenant's index; status ready

Before each batch the function checks the time it has left; when it runs short, it sends itself a
`continue` message for the same upload and returns. The next invocation picks up at the recorded progress.

Every step is safe to repeat. An upload is identified by its *generation*, derived from the S3 event, so a
redelivered event is recognised; a usage event's id is derived from the generation and the batch's first
chunk, so a batch embedded twice after a crash is billed once; every progress write is conditional on the
document still processing this generation, so a delete or a newer upload stops older work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from shared.access.budgets import Reservation, TenantBudgets
from shared.chunking import chunk_text
from shared.data.blobs import BlobStore, parse_source_key
from shared.data.compaction import CompactionResult
from shared.data.documents import DocumentRepository
from shared.data.vectors import S3VectorStore
from shared.embeddings import Embedder
from shared.errors import BudgetExhausted, NotFound
from shared.ids import derived_id
from shared.metering import UsageSink
from shared.models import Chunk, Document, DocumentStatus, IngestionStage, UsageEvent, UsageKind
from shared.observability import (
    CHUNKS_INGESTED,
    DOCUMENTS_FAILED,
    DOCUMENTS_INGESTED,
    EMBEDDING_TOKENS,
    count,
    logger,
)
from shared.parsing import UnreadableDocument, extract_text
from shared.settings import Settings
from shared.vectors import Segment

CONTINUE_MESSAGE = "ingestion.continue"
# Compact a tenant's vector segments into packs (shared/data/compaction.py): sent when a publish or removal makes
# it due, and by a compaction that ran short of time.
COMPACT_MESSAGE = "vectors.compact"
# The upload sweep (every resources.UPLOAD_SWEEP_MINUTES) fails a document whose upload URL expired this long
# ago (an upload started just before expiry may still be on its way) and whose file never came. Up to
# SWEEP_BATCH documents a run; the next run takes the rest.
UPLOAD_GRACE = timedelta(minutes=5)
SWEEP_BATCH = 500
NEVER_ARRIVED = "the upload never arrived"
BUDGET_SPENT = "the monthly token budget is spent: raise it, or upload again next month"


def s3_notification(key: str, etag: str, at: datetime) -> dict[str, Any]:
    """The body S3 sends the ingestion queue for an object created (the fields ingestion reads)."""
    event_time = at.isoformat().replace("+00:00", "Z")
    return {"Records": [{"eventTime": event_time, "s3": {"object": {"key": key, "eTag": etag.strip('"')}}}]}


class IngestOutcome(StrEnum):
    READY = "ready"
    FAILED = "failed"
    CONTINUED = "continued"  # handed the rest to a new message
    SKIPPED = "skipped"  # unknown key, deleted document, duplicate or stale delivery: acknowledged, never retried


class Continuations(Protocol):
    def send(self, body: dict[str, Any]) -> None: ...


@dataclass(frozen=True)
class Upload:
    """One upload of a document's source: which object, and which version of it (from the S3 event)."""

    key: str
    version: str  # eTag, sequencer and event time: the same for every delivery of one upload's event

    @property
    def generation(self) -> str:
        return derived_id("g", self.key, self.version)


@dataclass(frozen=True)
class Continuation:
    tenant_id: str
    document_id: str
    generation: str

    def to_message(self) -> dict[str, Any]:
        return {"docuchat": CONTINUE_MESSAGE, **self.__dict__}

    @classmethod
    def from_message(cls, body: dict[str, Any]) -> Continuation:
        return cls(tenant_id=body["tenant_id"], document_id=body["document_id"], generation=body["generation"])


def compaction_message(tenant_id: str) -> dict[str, Any]:
    return {"docuchat": COMPACT_MESSAGE, "tenant_id": tenant_id}


TimeLeft = Callable[[], float]  # seconds this invocation has left


class IngestionService:
    def __init__(
        self,
        settings: Settings,
        documents: DocumentRepository,
        blobs: BlobStore,
        vectors: S3VectorStore,
        embedder: Embedder,
        usage: UsageSink,
        continuations: Continuations,
        clock: Callable[[], datetime],
        budgets: TenantBudgets | None = None,
    ) -> None:
        self._budgets = budgets  # None: no budgets (tools and benchmarks)
        self._settings = settings
        self._documents = documents
        self._blobs = blobs
        self._vectors = vectors
        self._embedder = embedder
        self._usage = usage
        self._continuations = continuations
        self._clock = clock

    def ingest(self, upload: Upload, time_left: TimeLeft) -> IngestOutcome:
        """Start (or, for a redelivered event, resume) processing an uploaded source."""
        parsed = parse_source_key(upload.key)
        if parsed is None:
            logger.info("skipping an object the service does not know", extra={"key": upload.key})
            return IngestOutcome.SKIPPED
        document = self._documents.get(*parsed)
        if document is None or document.status == DocumentStatus.DELETING:
            logger.warning("skipping a source with no live document", extra={"key": upload.key})
            return IngestOutcome.SKIPPED
        generation = upload.generation
        if document.generation == generation:
            if document.status == DocumentStatus.PROCESSING:
                return self._resume(document, time_left)
            if document.status == DocumentStatus.READY:
                return IngestOutcome.SKIPPED  # this upload was already processed: a duplicate event
            # FAILED: a redrive from the DLQ after a fix. Processing it again is safe (usage ids repeat).
            logger.info("retrying an upload that failed", extra={"document_id": document.document_id})
        try:
            self._documents.claim(
                document.tenant_id, document.document_id, generation, document.generation, self._clock()
            )
        except NotFound:
            return IngestOutcome.SKIPPED  # deleted, or another delivery got there first
        claimed = document.model_copy(update={"generation": generation, "status": DocumentStatus.PROCESSING})
        if document.generation is not None:
            # A new upload of a processed document: its old vectors must not meet the new chunks' text.
            self._vectors.remove(document.tenant_id, document.document_id)
        return self._parse(claimed, time_left)

    def resume(self, continuation: Continuation, time_left: TimeLeft) -> IngestOutcome:
        document = self._documents.get(continuation.tenant_id, continuation.document_id)
        if (
            document is None
            or document.status != DocumentStatus.PROCESSING
            or document.generation != continuation.generation
        ):
            return IngestOutcome.SKIPPED  # finished, deleted or superseded meanwhile
        return self._resume(document, time_left)

    def _resume(self, document: Document, time_left: TimeLeft) -> IngestOutcome:
        chunks = self._documents.read_chunks(document.tenant_id, document.document_id)
        if document.stage == IngestionStage.PARSING or len(chunks) != document.chunk_count:
            # The invocation that claimed it stopped while parsing: parsing again is the way on.
            return self._parse(document, time_left)
        return self._embed(document, chunks, start=document.chunks_embedded, time_left=time_left)

    def _parse(self, document: Document, time_left: TimeLeft) -> IngestOutcome:
        try:
            text = self._read_text(document.source_key, document.content_type)
        except UnreadableDocument as error:
            return self._fail(document, error.message)
        chunks = [
            Chunk(
                tenant_id=document.tenant_id,
                document_id=document.document_id,
                index=index,
                title=document.title,
                text=piece.text,
                section=piece.section,
                page=piece.page,
            )
            for index, piece in enumerate(chunk_text(text))
        ]
        if not chunks:
            return self._fail(document, "the document has no text")
        self._documents.replace_chunks(document.tenant_id, document.document_id, chunks)
        try:
            self._progress(document, IngestionStage.EMBEDDING, chunk_count=len(chunks), chunks_embedded=0)
        except NotFound:
            return self._abandon(document)
        return self._embed(document, chunks, start=0, time_left=time_left)

    def _embed(self, document: Document, chunks: list[Chunk], start: int, time_left: TimeLeft) -> IngestOutcome:
        assert document.generation is not None
        texts = [chunk.embedding_text() for chunk in chunks]
        margin = self._settings.ingestion_time_margin_seconds
        for offset, end in self._embedder.batches(texts[start:]):
            first, last = start + offset, start + end
            # At least one batch an invocation, so every invocation moves the document on.
            if first > start and time_left() < margin:
                self._continuations.send(
                    Continuation(document.tenant_id, document.document_id, document.generation).to_message()
                )
                logger.info(
                    "handing the rest of a document to a new message",
                    extra={"document_id": document.document_id, "embedded": first, "chunks": len(chunks)},
                )
                return IngestOutcome.CONTINUED
            try:
                reservation = self._reserve(document, texts[first:last])
            except BudgetExhausted:
                return self._fail(document, BUDGET_SPENT)
            embeddings = self._embedder.embed(texts[first:last])
            self._meter(document, first, embeddings.tokens)
            if self._budgets is not None:
                self._budgets.settle(reservation, embeddings.tokens)
            self._vectors.write_part(
                document.tenant_id, document.document_id, document.generation, first, embeddings.vectors
            )
            try:
                self._progress(document, IngestionStage.EMBEDDING, chunks_embedded=last)
            except NotFound:
                return self._abandon(document)
        return self._publish(document, chunks, texts)

    def _reserve(self, document: Document, texts: list[str]) -> Reservation | None:
        """The batch's tokens, held against the tenant's budget (about four characters a token, erring high)."""
        if self._budgets is None:
            return None
        return self._budgets.reserve(document.tenant_id, sum(len(text) for text in texts) // 3 + len(texts))

    def _publish(self, document: Document, chunks: list[Chunk], texts: list[str]) -> IngestOutcome:
        assert document.generation is not None
        try:
            self._progress(document, IngestionStage.INDEXING)
            vectors = self._vectors.read_parts(
                document.tenant_id, document.document_id, document.generation, len(chunks)
            )
            segment = Segment.build(
                tenant_id=document.tenant_id,
                document_id=document.document_id,
                generation=document.generation,
                model=self._embedder.model,
                chunk_indexes=[chunk.index for chunk in chunks],
                vectors=vectors,
                texts=texts,
            )
            self._vectors.publish(segment, ready_at=self._clock())
        except NotFound:
            return self._abandon(document)
        count(DOCUMENTS_INGESTED, 1)
        count(CHUNKS_INGESTED, len(chunks))
        if self._vectors.compaction_due(document.tenant_id):
            self._continuations.send(compaction_message(document.tenant_id))
        logger.info(
            "document ready",
            extra={"tenant_id": document.tenant_id, "document_id": document.document_id, "chunks": len(chunks)},
        )
        return IngestOutcome.READY

    def _meter(self, document: Document, first_chunk: int, tokens: int) -> None:
        assert document.generation is not None
        self._usage.send(
            UsageEvent(
                # One id per upload and batch: a batch embedded again after a crash is counted once.
                event_id=derived_id(
                    "e", "embedding", document.tenant_id, document.document_id, document.generation, str(first_chunk)
                ),
                tenant_id=document.tenant_id,
                kind=UsageKind.EMBEDDING,
                model=self._embedder.model,
                input_tokens=tokens,
                output_tokens=0,
                occurred_at=self._clock(),
            )
        )
        count(EMBEDDING_TOKENS, tokens)

    def _progress(self, document: Document, stage: IngestionStage, **counts: int) -> None:
        assert document.generation is not None
        self._documents.record_progress(
            document.tenant_id, document.document_id, document.generation, self._clock(), stage=stage, **counts
        )

    def _abandon(self, document: Document) -> IngestOutcome:
        """Stop: the document was deleted or re-uploaded meanwhile. What a deleted one left behind goes."""
        current = self._documents.get(document.tenant_id, document.document_id)
        if current is None or current.status == DocumentStatus.DELETING:
            # The delete may have run before this ingestion wrote; writing after it must not leave data behind.
            self._vectors.remove(document.tenant_id, document.document_id)
            self._documents.replace_chunks(document.tenant_id, document.document_id, [])
        logger.info(
            "document deleted or re-uploaded while processing; stopping",
            extra={"document_id": document.document_id, "generation": document.generation},
        )
        return IngestOutcome.SKIPPED

    def _read_text(self, key: str, content_type: str) -> str:
        limit = self._settings.max_upload_bytes
        body = self._blobs.get(key, max_bytes=limit)
        if len(body) > limit:
            raise UnreadableDocument(f"the file is larger than {limit:,} bytes")
        return extract_text(body, content_type, self._settings.max_document_chars, self._settings.max_pdf_pages)

    def fail_upload(self, upload: Upload, reason: str) -> None:
        """Mark the document of an upload failed: its message is going to the DLQ after its last try."""
        parsed = parse_source_key(upload.key)
        document = self._documents.get(*parsed) if parsed else None
        if document is not None:
            # The upload's own generation, or none if it never got as far as claiming the document.
            claimed = document.generation == upload.generation
            self._fail(document.model_copy(update={"generation": upload.generation if claimed else None}), reason)

    def compact(self, tenant_id: str, time_left: TimeLeft) -> CompactionResult:
        """Merge the tenant's vector segments into packs; when it ran short of time, another message follows."""
        result = self._vectors.compact(tenant_id, self._clock(), time_left)
        if result.more:
            self._continuations.send(compaction_message(tenant_id))
        return result

    def sweep_uploads(self) -> dict[str, int]:
        """Documents whose upload URL expired without their file: failed with NEVER_ARRIVED.

        One whose file is there after all (its S3 event was lost, or is late) is handed to ingestion instead,
        with the notification S3 would have sent; claiming it takes it out of the index.
        """
        failed = requeued = 0
        for tenant_id, document_id in self._documents.uploads_expired_before(self._clock() - UPLOAD_GRACE, SWEEP_BATCH):
            document = self._documents.get(tenant_id, document_id)
            if document is None or document.status != DocumentStatus.PENDING:
                continue  # the index lags the table: it arrived, or was deleted, a moment ago
            etag = self._blobs.etag(document.source_key)
            if etag is not None:
                self._continuations.send(s3_notification(document.source_key, etag, self._clock()))
                requeued += 1
                continue
            try:
                self._documents.mark_failed(tenant_id, document_id, None, NEVER_ARRIVED, self._clock())
            except NotFound:
                continue  # claimed meanwhile: the file came after all
            count(DOCUMENTS_FAILED, 1)
            failed += 1
        if failed or requeued:
            logger.info("upload sweep", extra={"failed": failed, "requeued": requeued})
        return {"failed": failed, "requeued": requeued}

    def fail_continuation(self, continuation: Continuation, reason: str) -> None:
        document = self._documents.get(continuation.tenant_id, continuation.document_id)
        if document is not None:
            self._fail(document.model_copy(update={"generation": continuation.generation}), reason)

    def _fail(self, document: Document, reason: str) -> IngestOutcome:
        try:
            self._documents.mark_failed(
                document.tenant_id, document.document_id, document.generation, reason, self._clock()
            )
        except NotFound:
            return IngestOutcome.SKIPPED  # no longer this upload's to fail (a newer one, or deleted)
        count(DOCUMENTS_FAILED, 1)
        logger.warning("document failed", extra={"document_id": document.document_id, "reason": reason})
        return IngestOutcome.FAILED
