"""Chat: retrieve the tenant's passages, answer, keep the conversation, meter the tokens."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

from shared.data.conversations import ConversationRepository
from shared.data.documents import DocumentRepository
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.ids import derived_id, new_id
from shared.llm import ExtractiveResponder, LLMError, Responder
from shared.models import Citation, Conversation, Message, Principal, Record, UsageEvent, UsageKind
from shared.observability import CHAT_REQUESTS, LLM_CALL_FAILURES, LLM_FALLBACKS, logger, metrics
from shared.retrieval import LexicalRetriever
from shared.settings import Settings

SNIPPET_CHARS = 240


class UsageSink(Protocol):
    def send(self, event: UsageEvent) -> None: ...


class ChatResult(Record):
    conversation_id: str
    answer: str
    citations: tuple[Citation, ...]
    input_tokens: int
    output_tokens: int
    model: str
    route: str  # "rag": answered from documents; "direct": no documents used; "fallback": LLM failed


def usage_event_id(tenant_id: str, request_id: str, message: str, conversation_id: str | None) -> str:
    """The same request retried gets the same id; a different question under a reused key gets its own.

    The content is part of the id so that a client repeating one Idempotency-Key cannot chat unmetered.
    """
    return derived_id("e", "chat", tenant_id, request_id, conversation_id or "", message)


class ChatService:
    def __init__(
        self,
        settings: Settings,
        documents: DocumentRepository,
        conversations: ConversationRepository,
        usage: UsageSink,
        responder: Responder,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._documents = documents
        self._conversations = conversations
        self._usage = usage
        self._responder = responder
        self._fallback = ExtractiveResponder()
        self._retriever = LexicalRetriever()
        self._clock = clock

    def chat(
        self, principal: Principal, request_id: str, message: str, conversation_id: str | None, use_documents: bool
    ) -> ChatResult:
        question = message.strip()
        if not question:
            raise InvalidInput("message must not be empty")
        if len(question) > self._settings.max_message_chars:
            raise PayloadTooLarge(f"message is longer than {self._settings.max_message_chars} characters")
        now = self._clock()
        conversation = self._conversation(principal.tenant_id, conversation_id, question, now)
        history = conversation.messages[-2 * self._settings.history_turns :] if self._settings.history_turns else ()

        passages = []
        if use_documents:
            chunks = self._documents.list_chunks(principal.tenant_id)
            passages = self._retriever.search(question, chunks, self._settings.retrieval_top_k)
        route = "rag" if passages else "direct"
        try:
            answer = self._responder.answer(question, passages, history)
        except LLMError as error:
            logger.warning("LLM call failed; answering with the extractive responder", extra={"error": str(error)})
            metrics.add_metric(name=LLM_CALL_FAILURES, unit="Count", value=1)
            metrics.add_metric(name=LLM_FALLBACKS, unit="Count", value=1)
            answer = self._fallback.answer(question, passages, history)
            route = "fallback"

        # Meter before answering: a retried request reuses its request id, hence its event id.
        self._usage.send(
            UsageEvent(
                event_id=usage_event_id(principal.tenant_id, request_id, question, conversation_id),
                tenant_id=principal.tenant_id,
                key_id=principal.key_id,
                kind=UsageKind.CHAT,
                model=answer.model,
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                occurred_at=now,
            )
        )
        metrics.add_metric(name=CHAT_REQUESTS, unit="Count", value=1)
        self._conversations.append(
            conversation.model_copy(update={"updated_at": now}),
            [
                Message(role="user", content=question, created_at=now),
                Message(role="assistant", content=answer.text, created_at=now),
            ],
            expires_at=now + timedelta(days=self._settings.conversation_ttl_days),
        )
        citations = tuple(
            Citation(
                document_id=p.chunk.document_id,
                title=p.chunk.title,
                chunk=p.chunk.index,
                snippet=p.chunk.text[:SNIPPET_CHARS],
                score=p.score,
            )
            for p in passages
        )
        return ChatResult(
            conversation_id=conversation.conversation_id,
            answer=answer.text,
            citations=citations,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
            model=answer.model,
            route=route,
        )

    def _conversation(self, tenant_id: str, conversation_id: str | None, question: str, now: datetime) -> Conversation:
        if conversation_id is None:
            return Conversation(
                tenant_id=tenant_id, conversation_id=new_id("c"), title=question[:80], created_at=now, updated_at=now
            )
        conversation = self._conversations.get(tenant_id, conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return conversation
