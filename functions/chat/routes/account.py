"""The caller's own account: who the key or token is, and what it may do."""

from __future__ import annotations

from fastapi import APIRouter

from functions.chat.deps import Caller, Services
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import FILE_TYPES, CallerOut, UploadRules

router = APIRouter(prefix="/v1", tags=["account"], responses=TENANT_ERRORS)


@router.get("/me", response_model=CallerOut)
def me(caller: Caller, services: Services) -> CallerOut:
    """Any valid key or token may ask; the web app calls it to sign in."""
    return CallerOut(
        tenant_id=caller.tenant_id,
        key_id=caller.key_id,
        subject=caller.rate_subject,
        scopes=sorted(caller.scopes),
        uploads=UploadRules(max_bytes=services.settings.max_upload_bytes, content_types=list(FILE_TYPES)),
        answers="model" if services.settings.llm_enabled else "extractive",
    )
