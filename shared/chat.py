"""Chat: retrieve the tenant's passages, answer, keep the conversation, meter the tokens."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from shared.data.conversations import ConversationRepository
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.ids import derived_id, new_id
from shared.llm import Answer, ExtractiveResponder, LLMError, Responder
from shared.metering import UsageSink
from shared.models import Citation, Conversation, Message, Passage, Principal, Record, UsageEvent, UsageKind
from shared.observability import (
    CHAT_REQUESTS,
    LLM_CALL_FAILURES,
    LLM_FALLBACKS,
    RETRIEVAL_NOTHING_RELEVANT,
    count,
    logger,
)
from shared.retrieval import HybridRetriever, Retrieval
from shared.settings import Settings

SNIPPET_CHARS = 240
NOT_FOUND_ANSWER = (
    "I don't know: none of your documents seem to cover that. Try rephrasing, or upload a document that answers it."
)


class ChatResult(Record):
    conversation_id: str
    answer: str
    citations: tuple[Citation, ...]
    input_tokens: int
    output_tokens: int
    embedding_tokens: int
    model: str
    # "rag": answered from documents; "not_found": no document was relevant, so no answer was made up;
    # "direct": documents not consulted; "fallback": the LLM failed and the extractive responder answered.
    route: str


def usage_event_id(tenant_id: str, request_id: str, message: str, conversation_id: str | None) -> str:
    """The same request retried gets the same id; a different question under a reused key gets its own.

    The content is part of the id so that a client repeating one Idempotency-Key cannot chat unmetered.
    """
    return derived_id("e", "chat", tenant_id, request_id, conversation_id or "", message)


class ChatService:
    def __init__(
        self,
        settings: Settings,
        retriever: HybridRetriever,
        conversations: ConversationRepository,
        usage: UsageSink,
        responder: Responder,
        clock: Callable[[], datetime],
    ) -> None:
        self._settings = settings
        self._retriever = retriever
        self._conversations = conversations
        self._usage = usage
        self._responder = responder
        self._fallback = ExtractiveResponder()
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

        retrieval = Retrieval(passages=[])
        if use_documents:
            retrieval = self._retriever.retrieve(principal.tenant_id, question, self._settings.retrieval_top_k)
        passages = retrieval.passages
        if use_documents and not passages:
            # Nothing relevant: say so rather than let the model answer from its own knowledge.
            count(RETRIEVAL_NOTHING_RELEVANT, 1)
            answer = Answer(text=NOT_FOUND_ANSWER, model=self._responder_model, input_tokens=0, output_tokens=0)
            route = "not_found"
        else:
            answer, route = self._answer(question, passages, history)

        # Meter before answering: a retried request reuses its request id, hence its event ids.
        self._meter(
            principal,
            usage_event_id(principal.tenant_id, request_id, question, conversation_id),
            retrieval,
            answer,
            now,
        )
        count(CHAT_REQUESTS, 1)
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
            embedding_tokens=retrieval.embedding_tokens,
            model=answer.model,
            route=route,
        )

    def _meter(self, principal: Principal, event_id: str, retrieval: Retrieval, answer: Answer, now: datetime) -> None:
        """One event for the question's embedding, one for the answer, sent together; each id derived from the
        request's."""
        events = []
        if retrieval.embedding_tokens:
            events.append(
                UsageEvent(
                    event_id=derived_id("e", "query-embedding", event_id),
                    tenant_id=principal.tenant_id,
                    key_id=principal.key_id,
                    kind=UsageKind.EMBEDDING,
                    model=retrieval.embedding_model,
                    input_tokens=retrieval.embedding_tokens,
                    output_tokens=0,
                    occurred_at=now,
                )
            )
        if answer.input_tokens or answer.output_tokens:
            events.append(
                UsageEvent(
                    event_id=event_id,
                    tenant_id=principal.tenant_id,
                    key_id=principal.key_id,
                    kind=UsageKind.CHAT,
                    model=answer.model,
                    input_tokens=answer.input_tokens,
                    output_tokens=answer.output_tokens,
                    occurred_at=now,
                )
            )
        if events:
            self._usage.send(*events)

    @property
    def _responder_model(self) -> str:
        return str(getattr(self._responder, "model", "docuchat"))

    def _answer(self, question: str, passages: list[Passage], history: Sequence[Message]) -> tuple[Answer, str]:
        route = "rag" if passages else "direct"
        try:
            return self._responder.answer(question, passages, history), route
        except LLMError as error:
            logger.warning("LLM call failed; answering with the extractive responder", extra={"error": str(error)})
            count(LLM_CALL_FAILURES, 1)
            count(LLM_FALLBACKS, 1)
            return self._fallback.answer(question, passages, history), "fallback"

    def _conversation(self, tenant_id: str, conversation_id: str | None, question: str, now: datetime) -> Conversation:
        if conversation_id is None:
            return Conversation(
                tenant_id=tenant_id, conversation_id=new_id("c"), title=question[:80], created_at=now, updated_at=now
            )
        conversation = self._conversations.get(tenant_id, conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return conversation
