"""Chat and conversations."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from starlette.concurrency import run_in_threadpool

from functions.chat.deps import Chatter, PageParams, RequestId, Services, known_id
from functions.chat.openapi import CHAT_EVENT_SCHEMA, TENANT_ERRORS
from functions.chat.schemas import (
    ChatRequest,
    ChatResponse,
    ConversationList,
    ConversationOut,
    MessageOut,
    TokenUsage,
)
from functions.chat.sse import chat_events, event_stream
from shared.errors import NotFound
from shared.models import Conversation

router = APIRouter(prefix="/v1", tags=["chat"], responses=TENANT_ERRORS)


@router.post(
    "/chat",
    response_model=ChatResponse,
    responses={200: {"content": {"text/event-stream": {"schema": CHAT_EVENT_SCHEMA}}}},
)
async def chat(body: ChatRequest, caller: Chatter, services: Services, request_id: RequestId) -> Any:
    """An answer from the tenant's documents, with citations; `stream: true` sends it as it is written."""
    # The service (its I/O) on a worker thread, once: a sync route would hop again to check its reply's model.
    chat, args = services.chat, (caller, request_id, body.message, body.conversation_id, body.use_documents)
    if body.stream:
        events = await run_in_threadpool(chat.stream, *args)
        return event_stream(chat_events(events, services.settings.stream_keepalive_seconds))
    result = await run_in_threadpool(chat.chat, *args)
    return ChatResponse(
        conversation_id=result.conversation_id,
        answer=result.answer,
        citations=list(result.citations),
        usage=TokenUsage(
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            total_tokens=result.input_tokens + result.output_tokens,
            embedding_tokens=result.embedding_tokens,
        ),
        model=result.model,
        route=result.route,
        cached=result.cached,
    )


def _out(conversation: Conversation, with_messages: bool) -> ConversationOut:
    messages = [MessageOut(**m.model_dump()) for m in conversation.messages] if with_messages else None
    return ConversationOut(
        conversation_id=conversation.conversation_id,
        title=conversation.title,
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        messages=messages,
    )


@router.get("/conversations", response_model=ConversationList)
def list_conversations(caller: Chatter, services: Services, page: PageParams) -> ConversationList:
    """Most recently updated first, a page at a time: pass `next_cursor` back as `cursor` for the next page."""
    found = services.conversations.page_conversations(caller.tenant_id, page.limit, page.cursor)
    return ConversationList(conversations=[_out(c, False) for c in found.items], next_cursor=found.next_cursor)


@router.get("/conversations/{conversation_id}", response_model=ConversationOut)
def get_conversation(conversation_id: str, caller: Chatter, services: Services) -> ConversationOut:
    conversation = services.conversations.get(caller.tenant_id, known_id(conversation_id, "conversation"))
    if conversation is None:
        raise NotFound(f"conversation {conversation_id} not found")
    return _out(conversation, True)


@router.delete("/conversations/{conversation_id}", status_code=204)
def delete_conversation(conversation_id: str, caller: Chatter, services: Services) -> Response:
    if not services.conversations.delete(caller.tenant_id, known_id(conversation_id, "conversation")):
        raise NotFound(f"conversation {conversation_id} not found")
    return Response(status_code=204)
