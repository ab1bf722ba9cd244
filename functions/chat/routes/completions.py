"""The OpenAI-compatible door: POST /v1/chat/completions, GET /v1/models. Errors here take OpenAI's shape."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from functions.chat.deps import Chatter, RequestId, Services
from functions.chat.openapi import COMPLETION_EVENT_SCHEMA, OPENAI_ERRORS, completion_request_schema
from functions.chat.sse import completion_chunks, event_stream
from shared.errors import InvalidInput

DEFAULT_MAX_TOKENS_LIMIT = 16_384  # LLM_MAX_TOKENS_LIMIT's default, which the schema states
router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"], responses=OPENAI_ERRORS)


@router.post(
    "/chat/completions",
    responses={200: {"content": {"text/event-stream": {"schema": COMPLETION_EVENT_SCHEMA}}}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": completion_request_schema(DEFAULT_MAX_TOKENS_LIMIT)}},
        }
    },
)
async def create_completion(request: Request, caller: Chatter, services: Services, request_id: RequestId) -> Any:
    """OpenAI's chat completions, answered by the stage's model chain; `stream: true` streams OpenAI's chunks.

    The extension `"docuchat": {"use_documents": true}` answers from the tenant's documents; its citations come in
    `docuchat` of the reply (or of the last streamed chunk). Errors are `{"error": {message, type, param, code}}`.
    """
    body = _json(await request.body())
    completions = services.completions
    if isinstance(body, dict) and body.get("stream") is True:
        chunks = await run_in_threadpool(completions.stream, caller, request_id, body)
        return event_stream(completion_chunks(chunks, services.settings.stream_keepalive_seconds))
    return await run_in_threadpool(completions.create, caller, request_id, body)


@router.get("/models")
def list_models(caller: Chatter, services: Services) -> dict[str, Any]:
    """The models this tenant may ask for, the stage's default chain first."""
    return {"object": "list", "data": services.completions.models()}


@router.get("/models/{model_id}")
def get_model(model_id: str, caller: Chatter, services: Services) -> dict[str, Any]:
    return services.completions.model(model_id)


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInput("We could not parse the JSON body of your request.", code="invalid_json") from error
