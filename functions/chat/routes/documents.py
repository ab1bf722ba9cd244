"""Documents: add inline text, list, and check status."""

from __future__ import annotations

from fastapi import APIRouter

from functions.chat.deps import Caller, Services, known_id
from functions.chat.schemas import DocumentCreate, DocumentOut

router = APIRouter(prefix="/v1/documents", tags=["documents"])


@router.post("", status_code=202, response_model=DocumentOut)
def create_document(body: DocumentCreate, caller: Caller, services: Services) -> DocumentOut:
    """Accepts inline text; it is chunked in the background. Poll GET /v1/documents/{id} for `ready`."""
    return DocumentOut.of(services.document_service.create_inline(caller, body.title, body.text, body.content_type))


@router.get("")
def list_documents(caller: Caller, services: Services) -> dict[str, list[DocumentOut]]:
    return {"documents": [DocumentOut.of(d) for d in services.document_service.list_documents(caller)]}


@router.get("/{document_id}", response_model=DocumentOut)
def get_document(document_id: str, caller: Caller, services: Services) -> DocumentOut:
    return DocumentOut.of(services.document_service.get(caller, known_id(document_id, "document")))
