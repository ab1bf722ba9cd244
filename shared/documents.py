"""Documents: accept a tenant's text, then (in the ingestion function) chunk it and mark it ready or failed."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from enum import StrEnum

from shared.chunking import chunk_text
from shared.data.blobs import BlobStore, parse_source_key, source_key
from shared.data.documents import DocumentRepository
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.ids import new_id
from shared.models import Chunk, Document, DocumentStatus, Principal
from shared.observability import DOCUMENTS_FAILED, DOCUMENTS_INGESTED, logger, metrics
from shared.parsing import HTML, MARKDOWN, PLAIN, SUPPORTED_TYPES, UnreadableDocument, extract_text
from shared.settings import Settings

INLINE_CONTENT_TYPES = (PLAIN, MARKDOWN, HTML)
MAX_TITLE_CHARS = 200


def _checked_title(title: str) -> str:
    title = title.strip()
    if not title or len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title must be 1 to {MAX_TITLE_CHARS} characters")
    return title


class IngestOutcome(StrEnum):
    READY = "ready"
    FAILED = "failed"
    SKIPPED = "skipped"  # not a key the service knows, or no such document: acknowledged, never retried


class DocumentService:
    def __init__(
        self, settings: Settings, documents: DocumentRepository, blobs: BlobStore, clock: Callable[[], datetime]
    ) -> None:
        self._settings = settings
        self._documents = documents
        self._blobs = blobs
        self._clock = clock

    def create_upload(
        self, principal: Principal, title: str, content_type: str, size_bytes: int
    ) -> tuple[Document, str, datetime]:
        """A pending document and a presigned URL to PUT its file to; ingestion starts when it arrives."""
        title = _checked_title(title)
        if content_type not in SUPPORTED_TYPES:
            raise InvalidInput(f"content_type must be one of {', '.join(SUPPORTED_TYPES)}")
        if size_bytes <= 0:
            raise InvalidInput("size_bytes must be above zero: an empty file has nothing to index")
        if size_bytes > self._settings.max_upload_bytes:
            raise PayloadTooLarge(f"files are limited to {self._settings.max_upload_bytes:,} bytes")
        document = self._new_document(principal, title, content_type, size_bytes)
        self._documents.put(document)
        url = self._blobs.presigned_put(
            document.source_key, content_type, size_bytes, self._settings.upload_url_seconds
        )
        return document, url, document.created_at + timedelta(seconds=self._settings.upload_url_seconds)

    def _new_document(self, principal: Principal, title: str, content_type: str, size_bytes: int) -> Document:
        now = self._clock()
        document_id = new_id("d")
        return Document(
            tenant_id=principal.tenant_id,
            document_id=document_id,
            title=title,
            content_type=content_type,
            source_key=source_key(principal.tenant_id, document_id),
            size_bytes=size_bytes,
            created_at=now,
            updated_at=now,
        )

    def create_inline(self, principal: Principal, title: str, text: str, content_type: str) -> Document:
        title = _checked_title(title)
        if content_type not in INLINE_CONTENT_TYPES:
            raise InvalidInput(f"content_type must be one of {', '.join(INLINE_CONTENT_TYPES)}")
        if not text.strip():
            raise InvalidInput("text must not be empty")
        if len(text) > self._settings.max_document_chars:
            raise PayloadTooLarge(f"text is longer than {self._settings.max_document_chars} characters")
        body = text.encode("utf-8")
        document = self._new_document(principal, title, content_type, len(body))
        # The record first: the S3 event that follows the upload must find it.
        self._documents.put(document)
        self._blobs.put(document.source_key, body, content_type)
        return document

    def get(self, principal: Principal, document_id: str) -> Document:
        document = self._documents.get(principal.tenant_id, document_id)
        if document is None:
            raise NotFound(f"document {document_id} not found")
        return document

    def delete(self, principal: Principal, document_id: str) -> None:
        """Remove a document, its chunks and its source file; retrieval never sees it again."""
        document = self.get(principal, document_id)
        self._documents.delete(document.tenant_id, document.document_id)
        self._blobs.delete(document.source_key)
        logger.info("document deleted", extra={"tenant_id": document.tenant_id, "document_id": document_id})

    def list_documents(self, principal: Principal) -> list[Document]:
        return self._documents.list_documents(principal.tenant_id)

    def ingest(self, key: str) -> IngestOutcome:
        """Chunk and store the source at `key`. Unknown keys are skipped; bad content fails the document."""
        parsed = parse_source_key(key)
        if parsed is None:
            logger.info("skipping an object the service does not know", extra={"key": key})
            return IngestOutcome.SKIPPED
        tenant_id, document_id = parsed
        document = self._documents.get(tenant_id, document_id)
        if document is None:
            logger.warning("skipping a source with no document record", extra={"key": key})
            return IngestOutcome.SKIPPED
        try:
            self._documents.set_status(tenant_id, document_id, DocumentStatus.PROCESSING, self._clock())
        except NotFound:
            return IngestOutcome.SKIPPED  # deleted since the upload
        try:
            text = self._read_text(key, document.content_type)
        except UnreadableDocument as error:
            return self._fail(document, error.message)
        chunks = [
            Chunk(tenant_id=tenant_id, document_id=document_id, index=index, title=document.title, text=piece)
            for index, piece in enumerate(chunk_text(text))
        ]
        if not chunks:
            return self._fail(document, "the document has no text")
        self._documents.replace_chunks(tenant_id, document_id, chunks)
        try:
            self._documents.set_status(
                tenant_id, document_id, DocumentStatus.READY, self._clock(), chunk_count=len(chunks)
            )
        except NotFound:
            # Deleted while it was being processed: take back the chunks just written.
            self._documents.replace_chunks(tenant_id, document_id, [])
            return IngestOutcome.SKIPPED
        metrics.add_metric(name=DOCUMENTS_INGESTED, unit="Count", value=1)
        logger.info("document ready", extra={"tenant_id": tenant_id, "document_id": document_id, "chunks": len(chunks)})
        return IngestOutcome.READY

    def _read_text(self, key: str, content_type: str) -> str:
        limit = self._settings.max_upload_bytes
        body = self._blobs.get(key, max_bytes=limit)
        if len(body) > limit:
            raise UnreadableDocument(f"the file is larger than {limit:,} bytes")
        return extract_text(body, content_type, self._settings.max_document_chars, self._settings.max_pdf_pages)

    def fail_source(self, key: str, reason: str) -> None:
        """Mark the document behind a source failed: its message is going to the DLQ after its last try."""
        parsed = parse_source_key(key)
        document = self._documents.get(*parsed) if parsed else None
        if document is not None and document.status != DocumentStatus.READY:
            self._fail(document, reason)

    def _fail(self, document: Document, reason: str) -> IngestOutcome:
        self._documents.set_status(
            document.tenant_id, document.document_id, DocumentStatus.FAILED, self._clock(), reason=reason
        )
        metrics.add_metric(name=DOCUMENTS_FAILED, unit="Count", value=1)
        logger.warning("document failed", extra={"document_id": document.document_id, "reason": reason})
        return IngestOutcome.FAILED
