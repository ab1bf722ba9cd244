"""Documents: accept a tenant's text or file, list them, delete them. Ingestion is in shared/ingestion.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from shared.data.blobs import BlobStore, source_key
from shared.data.documents import DocumentRepository
from shared.data.dynamo import Page
from shared.data.vectors import S3VectorStore
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.ids import new_id
from shared.ingestion import Continuations, compaction_message
from shared.models import Document, Principal
from shared.observability import logger
from shared.parsing import HTML, MARKDOWN, PLAIN, SUPPORTED_TYPES
from shared.settings import Settings

INLINE_CONTENT_TYPES = (PLAIN, MARKDOWN, HTML)
MAX_TITLE_CHARS = 200


def _checked_title(title: str) -> str:
    title = title.strip()
    if not title or len(title) > MAX_TITLE_CHARS:
        raise InvalidInput(f"title must be 1 to {MAX_TITLE_CHARS} characters")
    return title


class DocumentService:
    def __init__(
        self,
        settings: Settings,
        documents: DocumentRepository,
        blobs: BlobStore,
        vectors: S3VectorStore,
        clock: Callable[[], datetime],
        continuations: Continuations | None = None,
    ) -> None:
        self._settings = settings
        self._documents = documents
        self._blobs = blobs
        self._vectors = vectors
        self._clock = clock
        self._continuations = continuations  # the ingestion queue, for compaction requests

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
        assert document.upload_expires_at is not None
        return document, url, document.upload_expires_at

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
            # Inline text is stored at once, but a crash between the record and the file leaves it waiting too.
            upload_expires_at=now + timedelta(seconds=self._settings.upload_url_seconds),
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
        """Remove a document, its vectors, chunks and source file; retrieval never sees it again.

        Marked `deleting` first, so a running ingestion stops and a DELETE retried after a failure finishes.
        """
        document = self.get(principal, document_id)
        try:
            self._documents.mark_deleting(document.tenant_id, document.document_id, self._clock())
        except NotFound:
            return  # deleted meanwhile by another request
        self._vectors.remove(document.tenant_id, document.document_id)
        self._documents.delete(document.tenant_id, document.document_id)
        self._blobs.delete(document.source_key)
        # A removed document's rows in a pack are never served, and are dropped by the next compaction.
        if self._continuations is not None and self._vectors.compaction_due(document.tenant_id):
            self._continuations.send(compaction_message(document.tenant_id))
        logger.info("document deleted", extra={"tenant_id": document.tenant_id, "document_id": document_id})

    def page_documents(self, principal: Principal, limit: int, cursor: str | None) -> Page[Document]:
        return self._documents.page_documents(principal.tenant_id, limit, cursor)
