"""Documents: add inline text, list, and check status."""

from __future__ import annotations

from fastapi import APIRouter, Response

from functions.chat.deps import DocumentReader, DocumentWriter, PageParams, Services, known_id
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import DocumentCreate, DocumentList, DocumentOut, InlineDocument, UploadTarget

router = APIRouter(prefix="/v1/documents", tags=["documents"], responses=TENANT_ERRORS)


@router.post("", status_code=202, response_model=DocumentOut)
def create_document(body: DocumentCreate, caller: DocumentWriter, services: Services) -> DocumentOut:
    """Inline `text` is stored at once; for a file (`size_bytes`), PUT it to `upload.url` with `upload.headers`.

    Either way it is parsed and chunked in the background: poll GET /v1/documents/{id} for `ready` or `failed`.
    """
    documents = services.document_service
    if isinstance(body, InlineDocument):
        return DocumentOut.of(documents.create_inline(caller, body.title, body.text, body.content_type))
    document, url, expires_at = documents.create_upload(caller, body.title, body.content_type, body.size_bytes)
    headers = {"Content-Type": document.content_type, "Content-Length": str(document.size_bytes)}
    return DocumentOut.of(document, UploadTarget(url=url, headers=headers, expires_at=expires_at))


@router.get("", response_model=DocumentList)
def list_documents(caller: DocumentReader, services: Services, page: PageParams) -> DocumentList:
    """Newest first, a page at a time: pass `next_cursor` back as `cursor` for the next page."""
    found = services.document_service.page_documents(caller, page.limit, page.cursor)
    return DocumentList(documents=[DocumentOut.of(d) for d in found.items], next_cursor=found.next_cursor)


@router.get("/{document_id}", response_model=DocumentOut)
def get_document(document_id: str, caller: DocumentReader, services: Services) -> DocumentOut:
    return DocumentOut.of(services.document_service.get(caller, known_id(document_id, "document")))


@router.delete("/{document_id}", status_code=204)
def delete_document(document_id: str, caller: DocumentWriter, services: Services) -> Response:
    """Removes the document, its chunks and its file."""
    services.document_service.delete(caller, known_id(document_id, "document"))
    return Response(status_code=204)
