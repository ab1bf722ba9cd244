"""Chat (POST /v1/chat): retrieve the tenant's passages, answer, keep the conversation, meter the tokens.

One pipeline serves both the buffered reply and the stream. `_prepare` checks the request and gathers what the
answer needs (the conversation, the follow-up made standalone, the passages); it raises before anything is
streamed, so a bad request is a plain 4xx. `_answer` then yields the events of the answer: its citations,
pieces of text as the model writes them, and `Finished` once its usage has been metered and the conversation
saved (or `StreamError` when the model broke off mid-answer). The buffered reply is the same events, collected.

Routes (`route` in the reply):
- `rag`: answered from the tenant's passages; `direct`: documents not consulted;
- `not_found`: no passage was relevant, or the model found no answer in them (shared/chat/verdict.py), so it
  says it does not know rather than let a model guess;
- `degraded`: every model of the chain failed, so the extractive responder quoted the passages instead;
- `escalated`: the question went to a person (asked for one, angry, or "I don't know" again and again): a
  ticket was opened, and the reply says someone will follow up.

The month's token budget is reserved for the worst case before any model is called (the request is refused
with 429 when it cannot be), and settled with what was used once the answer is done.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.access.budgets import BudgetService, Reservation
from shared.chat.cache import CachedAnswer, CacheEntry, ResponseCache, cache_key
from shared.chat.followups import QueryRewriter, Rewrite
from shared.chat.prompts import rag_messages
from shared.chat.responders import (
    DEGRADED_NOTE,
    NOT_FOUND_ANSWER,
    Answer,
    ExtractiveResponder,
    LLMError,
    ModelRequest,
    usage_or_estimate,
)
from shared.chat.router import AllModelsFailed, ModelRouter
from shared.chat.usage import answer_events
from shared.chat.verdict import VerdictGate, says_not_in_documents
from shared.data.conversations import ConversationRepository
from shared.errors import InvalidInput, NotFound, PayloadTooLarge
from shared.escalation.router import Decision, Route, decide
from shared.escalation.tickets import ESCALATION_ANSWER, TicketService
from shared.ids import derived_id, new_id
from shared.metering import UsageSink
from shared.models import Citation, Conversation, Message, Principal, Record
from shared.observability import (
    CHAT_REQUESTS,
    LLM_DEGRADED,
    RETRIEVAL_MODEL_SAID_UNANSWERED,
    RETRIEVAL_NOTHING_RELEVANT,
    count,
    logger,
)
from shared.retrieval import HybridRetriever, Retrieval
from shared.settings import Settings

PASSAGE_TOKENS = 300  # what one retrieved passage may add to a prompt, at most (chunks are ~220 tokens)
REWRITE_TOKENS = 200  # a follow-up rewritten by the model: its prompt and its short answer
ROUTER_MODEL = "docuchat-router"  # what an escalation reply names as its model: no model wrote it
SMALL_TALK_ANSWER = "Hello! Ask me anything about your documents, and I'll answer with the passages I used."
_PIECE = re.compile(r"\S+\s*")
WORDS_PER_PIECE = 4  # how a ready-made text (cached, extractive) is streamed: a few words an event


class ChatResult(Record):
    conversation_id: str
    answer: str
    citations: tuple[Citation, ...]
    input_tokens: int
    output_tokens: int
    embedding_tokens: int
    model: str
    route: str
    cached: bool = False


@dataclass(frozen=True)
class CitationsReady:
    citations: tuple[Citation, ...]


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Finished:
    result: ChatResult


@dataclass(frozen=True)
class StreamError:
    code: str
    message: str


ChatEvent = CitationsReady | TextDelta | Finished | StreamError


def usage_event_id(tenant_id: str, request_id: str, message: str, conversation_id: str | None) -> str:
    """The same request retried gets the same id; a different question under a reused key gets its own.

    The content is part of the id so that a client repeating one Idempotency-Key cannot chat unmetered.
    """
    return derived_id("e", "chat", tenant_id, request_id, conversation_id or "", message)


@dataclass
class _Turn:
    principal: Principal
    event_id: str
    question: str
    conversation: Conversation
    history: tuple[Message, ...]
    use_documents: bool
    rewrite: Rewrite
    retrieval: Retrieval
    citations: tuple[Citation, ...]
    now: datetime
    decision: Decision
    reservation: Reservation | None
    metered_tokens: int = 0  # what _meter has sent for this turn: what its reservation settles to
    cache_entry: CacheEntry | None = None  # a new answer for the response cache, saved with the turn


class ChatService:
    def __init__(
        self,
        settings: Settings,
        retriever: HybridRetriever,
        conversations: ConversationRepository,
        usage: UsageSink,
        router: ModelRouter | None,
        cache: ResponseCache,
        rewriter: QueryRewriter,
        clock: Callable[[], datetime],
        budgets: BudgetService | None = None,
        tickets: TicketService | None = None,
    ) -> None:
        self._budgets = budgets  # None: no budgets (tools and benchmarks)
        self._tickets = tickets  # None: nothing is escalated
        self._settings = settings
        self._retriever = retriever
        self._conversations = conversations
        self._usage = usage
        self._router = router  # None without a key: the extractive responder answers
        self._cache = cache
        self._rewriter = rewriter
        self._extractive = ExtractiveResponder()
        self._clock = clock

    def chat(
        self, principal: Principal, request_id: str, message: str, conversation_id: str | None, use_documents: bool
    ) -> ChatResult:
        turn = self._prepare(principal, request_id, message, conversation_id, use_documents)
        for event in self._answer(turn, streamed=False):
            if isinstance(event, Finished):
                return event.result
        raise AssertionError("a buffered answer always finishes")

    def stream(
        self, principal: Principal, request_id: str, message: str, conversation_id: str | None, use_documents: bool
    ) -> Iterator[ChatEvent]:
        """The answer's events; the request is checked (and may raise) before the first one."""
        turn = self._prepare(principal, request_id, message, conversation_id, use_documents)
        return self._answer(turn, streamed=True)

    # --- before the answer ---------------------------------------------------------------------------------------

    def _prepare(
        self, principal: Principal, request_id: str, message: str, conversation_id: str | None, use_documents: bool
    ) -> _Turn:
        question = message.strip()
        if not question:
            raise InvalidInput("message must not be empty", param="message")
        if len(question) > self._settings.max_message_chars:
            raise PayloadTooLarge(f"message is longer than {self._settings.max_message_chars} characters")
        now = self._clock()
        conversation = self._conversation(principal.tenant_id, conversation_id, question, now)
        turns = self._settings.history_turns
        history = conversation.messages[-2 * turns :] if turns else ()
        decision = decide(question, history) if self._tickets is not None else Decision(Route.DOCUMENTS)
        reservation = self._reserve(principal, question, history, use_documents)
        rewrite, retrieval = Rewrite(query=question), Retrieval(passages=[])
        if use_documents and decision.route == Route.DOCUMENTS:
            rewrite = self._rewriter.standalone(question, history)
            retrieval = self._retriever.retrieve(principal.tenant_id, rewrite.query, self._settings.retrieval_top_k)
        citations = tuple(Citation.of(p) for p in retrieval.passages)
        return _Turn(
            principal=principal,
            event_id=usage_event_id(principal.tenant_id, request_id, question, conversation_id),
            question=question,
            conversation=conversation,
            history=tuple(history),
            use_documents=use_documents,
            rewrite=rewrite,
            retrieval=retrieval,
            citations=citations,
            now=now,
            decision=decision,
            reservation=reservation,
        )

    def _reserve(
        self, principal: Principal, question: str, history: Sequence[Message], use_documents: bool
    ) -> Reservation | None:
        """The worst this turn can cost: the question (embedded, and maybe rewritten), the conversation, the
        passages, and the longest answer. Raises BudgetExhausted (429) when the month's budget cannot hold it."""
        if self._budgets is None:
            return None
        settings = self._settings
        prompt = len(question) + sum(len(m.content) for m in history)
        passages = settings.retrieval_top_k * PASSAGE_TOKENS if use_documents else 0
        worst = 2 * (prompt // 3) + passages + settings.llm_max_output_tokens + REWRITE_TOKENS
        return self._budgets.reserve(principal.tenant_id, principal.limits.monthly_token_budget, worst)

    def _conversation(self, tenant_id: str, conversation_id: str | None, question: str, now: datetime) -> Conversation:
        if conversation_id is None:
            return Conversation(
                tenant_id=tenant_id, conversation_id=new_id("c"), title=question[:80], created_at=now, updated_at=now
            )
        conversation = self._conversations.get(tenant_id, conversation_id)
        if conversation is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return conversation

    # --- the answer ----------------------------------------------------------------------------------------------

    def _answer(self, turn: _Turn, streamed: bool) -> Iterator[ChatEvent]:
        """The answer's events; however it ends, its budget reservation is settled with what was metered."""
        try:
            yield from self._answer_events(turn, streamed)
        finally:
            if self._budgets is not None:
                self._budgets.settle(turn.reservation, turn.metered_tokens)

    def _answer_events(self, turn: _Turn, streamed: bool) -> Iterator[ChatEvent]:
        without_model = self._without_model(turn)
        if without_model is not None:
            yield CitationsReady(turn.citations)
            yield from without_model
            return
        passages, chain = turn.retrieval.passages, self._settings.llm_chain
        route = "rag" if passages else "direct"
        key = cache_key(turn.principal.tenant_id, chain, turn.question, passages, turn.history)
        cached = self._cache.get(turn.principal.tenant_id, key)
        if cached is not None:
            yield from self._cached(turn, cached, route)
            return
        assert self._router is not None
        request = ModelRequest(
            messages=rag_messages(turn.question, passages, turn.history),
            max_tokens=self._settings.llm_max_output_tokens,
            temperature=self._settings.llm_temperature,
        )
        try:
            if streamed:
                model, chunks = self._router.stream(chain, request)
            else:
                model, completion = self._router.complete(chain, request)
        except (AllModelsFailed, LLMError) as error:
            yield CitationsReady(turn.citations)
            yield from self._degraded(turn, error)
            return
        # With passages, the model may give its verdict that they do not answer: its start is held back until it
        # cannot be that, and the citations go out just before the first text (shared/chat/verdict.py).
        gate = VerdictGate(enabled=bool(passages))
        if not streamed:
            text, input_tokens, output_tokens = _completion_answer(completion, request)
            gate.feed(text)
        else:
            pieces: list[str] = []
            usage: dict[str, int] | None = None
            try:
                for chunk in chunks:
                    usage = chunk.get("usage") or usage
                    for text_piece in _deltas(chunk):
                        pieces.append(text_piece)
                        yield from self._shown(turn, gate, gate.feed(text_piece))
            except LLMError as error:
                yield from self._shown(turn, gate, "", force=True)
                yield from self._broke_off(turn, model, request, "".join(pieces), error)
                return
            text = "".join(pieces).strip()
            input_tokens, output_tokens = usage_or_estimate(usage, request, text)
        # Kept with the turn's conversation write (one call): a cached "not in the documents" verdict counts too.
        turn.cache_entry = self._cache.entry(
            turn.principal.tenant_id, key, CachedAnswer(text, model, input_tokens, output_tokens)
        )
        if gate.verdict:
            yield from self._not_in_documents(turn, model, input_tokens, output_tokens)
            return
        rest = gate.finish()
        yield from self._shown(turn, gate, rest if streamed else "", force=True)
        yield Finished(self._finish(turn, text, model, input_tokens, output_tokens, route))

    def _cached(self, turn: _Turn, cached: CachedAnswer, route: str) -> Iterator[ChatEvent]:
        tokens = cached.model, cached.input_tokens, cached.output_tokens
        if turn.retrieval.passages and says_not_in_documents(cached.text):
            yield from self._not_in_documents(turn, *tokens, cached=True)
            return
        yield CitationsReady(turn.citations)
        yield from self._ready_made(turn, cached.text, *tokens, route, cached=True)

    def _shown(self, turn: _Turn, gate: VerdictGate, text: str, force: bool = False) -> Iterator[ChatEvent]:
        """Text the gate let through, after the citations if none went out yet (`force`: the citations anyway)."""
        if (text or force) and gate.cite():
            yield CitationsReady(turn.citations)
        if text:
            yield TextDelta(text)

    def _not_in_documents(
        self, turn: _Turn, model: str, input_tokens: int, output_tokens: int, cached: bool = False
    ) -> Iterator[ChatEvent]:
        """The model read the passages and found no answer in them: "I don't know", citing nothing."""
        count(RETRIEVAL_MODEL_SAID_UNANSWERED, 1)
        turn.citations = ()
        yield CitationsReady(())
        yield from self._ready_made(turn, NOT_FOUND_ANSWER, model, input_tokens, output_tokens, "not_found", cached)

    def _without_model(self, turn: _Turn) -> Iterator[ChatEvent] | None:
        """The answers no model writes (to a person, small talk offline, "I don't know", no key), or None."""
        passages, route = turn.retrieval.passages, turn.decision.route
        if route == Route.ESCALATE and self._tickets is not None:
            return self._escalate(turn)
        if route == Route.DIRECT and self._router is None:
            return self._ready_made(turn, SMALL_TALK_ANSWER, self._extractive.model, 0, 0, "direct")
        if turn.use_documents and route == Route.DOCUMENTS and not passages:
            # Nothing relevant: say so rather than let the model answer from its own knowledge.
            count(RETRIEVAL_NOTHING_RELEVANT, 1)
            model = self._model_name(self._settings.llm_chain)
            return self._ready_made(turn, NOT_FOUND_ANSWER, model, 0, 0, "not_found")
        if self._router is None:  # no key: the extractive responder is the model
            answer = self._extractive.answer(turn.question, passages, turn.history)
            return self._ready_answer(turn, answer, "rag" if passages else "direct")
        return None

    def _ready_made(
        self,
        turn: _Turn,
        text: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        route: str,
        cached: bool = False,
    ) -> Iterator[ChatEvent]:
        """An answer that exists whole (cached, extractive, "I don't know"), streamed a few words at a time."""
        words = _PIECE.findall(text)
        for start in range(0, len(words), WORDS_PER_PIECE):
            yield TextDelta("".join(words[start : start + WORDS_PER_PIECE]))
        yield Finished(self._finish(turn, text, model, input_tokens, output_tokens, route, cached))

    def _escalate(self, turn: _Turn) -> Iterator[ChatEvent]:
        """A person takes it from here: a ticket, and a reply that says so (no model, nothing metered)."""
        assert self._tickets is not None
        ticket = self._tickets.open(
            turn.principal.tenant_id, turn.conversation.conversation_id, turn.question, turn.decision.reason
        )
        answer = ESCALATION_ANSWER.format(ticket_id=ticket.ticket_id)
        yield from self._ready_made(turn, answer, ROUTER_MODEL, 0, 0, "escalated")

    def _degraded(self, turn: _Turn, error: Exception) -> Iterator[ChatEvent]:
        logger.warning("no model answered; the extractive responder does", extra={"error": str(error)})
        count(LLM_DEGRADED, 1)
        answer = self._extractive.answer(turn.question, turn.retrieval.passages, turn.history, note=DEGRADED_NOTE)
        yield from self._ready_answer(turn, answer, "degraded")

    def _ready_answer(self, turn: _Turn, answer: Answer, route: str) -> Iterator[ChatEvent]:
        yield from self._ready_made(turn, answer.text, answer.model, answer.input_tokens, answer.output_tokens, route)

    def _broke_off(
        self, turn: _Turn, model: str, request: ModelRequest, partial: str, error: LLMError
    ) -> Iterator[ChatEvent]:
        """The model failed mid-answer: what it wrote is metered (estimated: it reported nothing), nothing is saved,
        and the reader is told, so a half answer never looks complete."""
        logger.warning("the model broke off mid-answer", extra={"model": model, "error": str(error)})
        input_tokens, output_tokens = usage_or_estimate(None, request, partial)
        self._meter(turn, model, input_tokens, output_tokens, cached=False)
        yield StreamError("upstream_failed", "the model stopped before finishing its answer; ask again")

    def _finish(
        self,
        turn: _Turn,
        text: str,
        model: str,
        input_tokens: int,
        output_tokens: int,
        route: str,
        cached: bool = False,
    ) -> ChatResult:
        # Meter before answering: a retried request reuses its request id, hence its event ids.
        self._meter(turn, model, input_tokens, output_tokens, cached)
        count(CHAT_REQUESTS, 1)
        self._conversations.append(
            turn.conversation.model_copy(update={"updated_at": turn.now}),
            [
                Message(role="user", content=turn.question, created_at=turn.now),
                Message(role="assistant", content=text, created_at=turn.now),
            ],
            expires_at=turn.now + timedelta(days=self._settings.conversation_ttl_days),
            cache_entry=turn.cache_entry,
        )
        return ChatResult(
            conversation_id=turn.conversation.conversation_id,
            answer=text,
            citations=turn.citations,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            embedding_tokens=turn.retrieval.embedding_tokens,
            model=model,
            route=route,
            cached=cached,
        )

    def _meter(self, turn: _Turn, model: str, input_tokens: int, output_tokens: int, cached: bool) -> None:
        events = answer_events(
            turn.principal,
            turn.event_id,
            turn.now,
            turn.retrieval,
            turn.rewrite,
            model,
            input_tokens,
            output_tokens,
            cached,
        )
        if events:
            self._usage.send(*events)
            turn.metered_tokens += sum(e.total_tokens for e in events)

    def _model_name(self, chain: list[str]) -> str:
        return chain[0] if self._router is not None and chain else self._extractive.model


def _deltas(chunk: dict[str, object]) -> Iterator[str]:
    choices = chunk.get("choices")
    for choice in choices if isinstance(choices, list) else []:
        delta = choice.get("delta") if isinstance(choice, dict) else None
        content = delta.get("content") if isinstance(delta, dict) else None
        if isinstance(content, str) and content:
            yield content


def _completion_answer(completion: dict[str, object], request: ModelRequest) -> tuple[str, int, int]:
    choices = completion.get("choices")
    message = (
        choices[0].get("message") if isinstance(choices, list) and choices and isinstance(choices[0], dict) else None
    )
    content = message.get("content") if isinstance(message, dict) else None
    text = str(content or "").strip()
    usage = completion.get("usage")
    return (text, *usage_or_estimate(usage if isinstance(usage, dict) else None, request, text))
