"""The OpenAI-compatible door: POST /v1/chat/completions and GET /v1/models, for the tools teams already use.

A request is checked as OpenAI checks it: unknown fields are refused, and a bad message or an absurd
`max_tokens` is a 400 naming the field. The standard fields pass through to the model: temperature,
max_tokens / max_completion_tokens, stop, response_format, tools, tool_choice, top_p, seed, the penalties and
user. The model a caller names comes first, then the stage's chain as fallbacks; when all fail, the
extractive responder answers (`docuchat.route: "degraded"`).

The extension field `"docuchat": {"use_documents": true}` retrieves passages for the last user message (made
standalone when it is a follow-up) and gives them to the model as delimited data; the citations come back in
`docuchat` of the reply, or of the last streamed chunk.

Usage is metered exactly as the model reported it, under the model that answered: the usage chunk is always
asked for upstream, and read to the end even when the caller hangs up (shared/chat/streaming.py). Answers
here are not cached: callers choose their own sampling and tools, and expect a fresh answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.access.budgets import BudgetService, Reservation
from shared.chat.followups import QueryRewriter, Rewrite
from shared.chat.prompts import DOCUMENTS_PROMPT, documents_block
from shared.chat.responders import (
    DEGRADED_NOTE,
    EXTRACTIVE_MODEL,
    NO_KEY_NOTE,
    ExtractiveResponder,
    LLMError,
    ModelRequest,
    prompt_text,
    usage_or_estimate,
)
from shared.chat.router import AllModelsFailed, ModelRouter
from shared.chat.usage import answer_events
from shared.errors import InvalidInput, ModelNotFound
from shared.ids import derived_id, new_id
from shared.metering import UsageSink
from shared.models import Citation, Message, Passage, Principal
from shared.observability import CHAT_REQUESTS, LLM_DEGRADED, count, logger
from shared.retrieval import HybridRetriever, Retrieval
from shared.settings import Settings

DEFAULT_MAX_TOKENS = 4096  # when the caller names none
ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
PASSTHROUGH = frozenset(
    {"stop", "response_format", "tools", "tool_choice", "parallel_tool_calls", "top_p", "seed", "user"}
    | {"presence_penalty", "frequency_penalty"}
)
FIELDS = PASSTHROUGH | {
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "n",
    "max_tokens",
    "max_completion_tokens",
    "docuchat",
}
MAX_MESSAGES = 2048
MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
_MODEL_CREATED = 1_700_000_000  # models' "created" in /v1/models: a fixed, plausible time


@dataclass(frozen=True)
class CompletionRequest:
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    include_usage: bool
    max_tokens: int
    temperature: float | None
    extra: dict[str, Any]
    use_documents: bool


# --- checking a request, as OpenAI does -----------------------------------------------------------------------------


def parse_request(body: Any, settings: Settings) -> CompletionRequest:
    if not isinstance(body, dict):
        raise InvalidInput("The request body must be a JSON object.", param=None)
    for name in body:
        if name not in FIELDS:
            raise InvalidInput(f"Unrecognized request argument supplied: {name}", param=name, code="unknown_parameter")
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise InvalidInput("You must provide a model parameter.", param="model")
    stream = _boolean(body, "stream", False)
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}):
        raise InvalidInput("'stream_options' takes only 'include_usage'.", param="stream_options")
    # Without stream it is ignored: a buffered reply always carries its usage.
    include_usage = bool(stream and options and _boolean(options, "include_usage", False, prefix="stream_options."))
    n = body.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise InvalidInput("Only n=1 is supported.", param="n")
    temperature = _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    extra = {name: body[name] for name in PASSTHROUGH if body.get(name) is not None}
    _check_passthrough(extra)
    docuchat = body.get("docuchat") or {}
    if not isinstance(docuchat, dict) or set(docuchat) - {"use_documents"}:
        raise InvalidInput("'docuchat' takes only 'use_documents'.", param="docuchat")
    return CompletionRequest(
        model=model.strip(),
        messages=_messages(body.get("messages")),
        stream=stream,
        include_usage=include_usage,
        max_tokens=_max_tokens(body, settings),
        temperature=temperature,
        extra=extra,
        use_documents=_boolean(docuchat, "use_documents", False, prefix="docuchat."),
    )


def _boolean(body: dict[str, Any], name: str, default: bool, prefix: str = "") -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidInput(f"'{prefix}{name}' must be a boolean.", param=prefix + name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise InvalidInput(f"'{name}' must be a number from {low} to {high}.", param=name)
    return float(value)


def _max_tokens(body: dict[str, Any], settings: Settings) -> int:
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    value = body.get(name)
    if value is None:
        return min(DEFAULT_MAX_TOKENS, settings.llm_max_tokens_limit)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= settings.llm_max_tokens_limit:
        raise InvalidInput(f"'{name}' must be an integer from 1 to {settings.llm_max_tokens_limit}.", param=name)
    return value


def _messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise InvalidInput("'messages' must be a non-empty array.", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise InvalidInput(f"'messages' may hold at most {MAX_MESSAGES} messages.", param="messages")
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidInput(f"'{where}' must be an object.", param=where)
        role = message.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidInput(
                f"Invalid value for '{where}.role': {role!r}; expected one of {', '.join(sorted(ROLES))}.",
                param=f"{where}.role",
            )
        _content(message, where)
    return list(messages)


def _content(message: dict[str, Any], where: str) -> None:
    content = message.get("content")
    if content is None:  # an assistant turn that only called tools, say
        return
    if isinstance(content, str):
        return
    if isinstance(content, list) and content:
        for index, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise InvalidInput(
                    f"'{where}.content[{index}]' must be a text part: only text input is supported.",
                    param=f"{where}.content[{index}]",
                )
        return
    raise InvalidInput(
        f"Invalid type for '{where}.content': expected a string or an array of text parts.", param=f"{where}.content"
    )


def _check_passthrough(extra: dict[str, Any]) -> None:
    stop = extra.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and len(stop) <= MAX_STOP_SEQUENCES and all(isinstance(s, str) for s in stop))
    ):
        raise InvalidInput(f"'stop' must be a string or up to {MAX_STOP_SEQUENCES} strings.", param="stop")
    response_format = extra.get("response_format")
    if response_format is not None and (
        not isinstance(response_format, dict)
        or response_format.get("type") not in ("text", "json_object", "json_schema")
    ):
        raise InvalidInput("'response_format.type' must be text, json_object or json_schema.", param="response_format")
    tools = extra.get("tools")
    if tools is not None and (
        not isinstance(tools, list)
        or len(tools) > MAX_TOOLS
        or not all(
            isinstance(t, dict)
            and t.get("type") == "function"
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
            for t in tools
        )
    ):
        raise InvalidInput("'tools' must be up to 128 function tools, each with a name.", param="tools")
    tool_choice = extra.get("tool_choice")
    if tool_choice is not None and not (tool_choice in ("none", "auto", "required") or isinstance(tool_choice, dict)):
        raise InvalidInput("'tool_choice' must be none, auto, required or a tool.", param="tool_choice")
    if extra.get("user") is not None and not isinstance(extra["user"], str):
        raise InvalidInput("'user' must be a string.", param="user")
    if extra.get("seed") is not None and (isinstance(extra["seed"], bool) or not isinstance(extra["seed"], int)):
        raise InvalidInput("'seed' must be an integer.", param="seed")


# --- answering ---------------------------------------------------------------------------------------------------


_BROKE_OFF = {"type": "server_error", "param": None, "code": "upstream_failed"}


class _Seen:
    """What a relayed stream has shown so far: its text, its usage, whether it finished."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.usage: dict[str, Any] | None = None
        self.finished = False

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def take(self, chunk: dict[str, Any], model: str) -> dict[str, Any] | None:
        """The chunk to pass on (named after `model`, without usage), or None for the usage chunk."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        choices = chunk.get("choices") or []
        for choice in choices:
            content = (choice.get("delta") or {}).get("content")
            if isinstance(content, str):
                self.pieces.append(content)
            self.finished = self.finished or bool(choice.get("finish_reason"))
        if not choices:
            return None
        outgoing = {**chunk, "model": model}
        outgoing.pop("usage", None)
        return outgoing


@dataclass
class _Call:
    principal: Principal
    request: CompletionRequest
    event_id: str
    chain: list[str]
    model_request: ModelRequest
    retrieval: Retrieval
    rewrite: Rewrite
    citations: list[dict[str, Any]]
    route: str
    question: str
    now: datetime
    reservation: Reservation | None = None
    metered_tokens: int = 0


class CompletionsService:
    def __init__(
        self,
        settings: Settings,
        retriever: HybridRetriever,
        usage: UsageSink,
        router: ModelRouter | None,
        rewriter: QueryRewriter,
        clock: Callable[[], datetime],
        budgets: BudgetService | None = None,
    ) -> None:
        self._budgets = budgets  # None: no budgets (tools and benchmarks)
        self._settings = settings
        self._retriever = retriever
        self._usage = usage
        self._router = router
        self._rewriter = rewriter
        self._extractive = ExtractiveResponder()
        self._clock = clock

    def models(self) -> list[dict[str, Any]]:
        """What a tenant may ask for, in OpenAI's shape: the stage's chain first."""
        names = [*self._settings.llm_allowed, EXTRACTIVE_MODEL] if self._router is not None else [EXTRACTIVE_MODEL]
        return [{"id": name, "object": "model", "created": _MODEL_CREATED, "owned_by": "docuchat"} for name in names]

    def model(self, model_id: str) -> dict[str, Any]:
        for model in self.models():
            if model["id"] == model_id:
                return model
        raise ModelNotFound(f"The model '{model_id}' does not exist or you do not have access to it.", param="model")

    def create(self, principal: Principal, request_id: str, body: Any) -> dict[str, Any]:
        call = self._prepare(principal, request_id, body)
        try:
            return self._create(call)
        finally:
            self._settle(call)

    def _create(self, call: _Call) -> dict[str, Any]:
        if self._router is None or call.request.model == EXTRACTIVE_MODEL:
            return self._finished(call, *self._extractive_answer(call, NO_KEY_NOTE))
        try:
            model, completion = self._router.complete(call.chain, call.model_request)
        except AllModelsFailed as error:
            return self._finished(call, *self._degraded(call, error))
        except LLMError as error:
            raise _refused(error) from error
        usage = completion.get("usage") if isinstance(completion.get("usage"), dict) else None
        text = _message_text(completion)
        prompt, completion_tokens = usage_or_estimate(usage, call.model_request, text)
        self._meter(call, model, prompt, completion_tokens)
        return {**completion, "model": model, "docuchat": self._extension(call)}

    def stream(self, principal: Principal, request_id: str, body: Any) -> Iterator[dict[str, Any] | str]:
        """OpenAI's chunks, then "[DONE]"; an {"error": ...} chunk (and no [DONE]) if the model breaks off.

        The request is checked, and the first model chosen, before the first chunk: a bad request is a 4xx."""
        call = self._prepare(principal, request_id, body)
        if self._router is None or call.request.model == EXTRACTIVE_MODEL:
            return self._relay(
                call,
                EXTRACTIVE_MODEL,
                _synthetic_chunks(EXTRACTIVE_MODEL, *self._extractive_answer(call, NO_KEY_NOTE)[1:]),
            )
        try:
            model, chunks = self._router.stream(call.chain, call.model_request)
        except AllModelsFailed as error:
            _, text, prompt, output = self._degraded(call, error)
            return self._relay(call, EXTRACTIVE_MODEL, _synthetic_chunks(EXTRACTIVE_MODEL, text, prompt, output))
        except LLMError as error:
            self._settle(call)
            raise _refused(error) from error
        return self._relay(call, model, chunks)

    def _settle(self, call: _Call) -> None:
        if self._budgets is not None:
            self._budgets.settle(call.reservation, call.metered_tokens)

    # --- the parts ---------------------------------------------------------------------------------------------

    def _prepare(self, principal: Principal, request_id: str, body: Any) -> _Call:
        request = parse_request(body, self._settings)
        allowed = {m["id"] for m in self.models()}
        if request.model not in allowed:
            raise ModelNotFound(
                f"The model '{request.model}' does not exist or you do not have access to it.", param="model"
            )
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
        messages = request.messages
        question = _last_user_text(messages)
        rewrite, retrieval, route = Rewrite(query=question), Retrieval(passages=[]), "direct"
        if request.use_documents and question:
            history = _history(messages, self._clock())
            rewrite = self._rewriter.standalone(question, history)
            retrieval = self._retriever.retrieve(principal.tenant_id, rewrite.query, self._settings.retrieval_top_k)
            route = "rag" if retrieval.passages else "not_found"
            if retrieval.passages:
                messages = _with_documents(messages, retrieval.passages)
        chain = list(dict.fromkeys([request.model, *self._settings.llm_chain]))
        reservation = None
        if self._budgets is not None:  # the worst case: the prompt (erring high) and the longest answer allowed
            worst = len(prompt_text(messages)) // 3 + len(messages) * 4 + request.max_tokens
            reservation = self._budgets.reserve(principal.tenant_id, principal.limits.monthly_token_budget, worst)
        return _Call(
            principal=principal,
            request=request,
            event_id=derived_id("e", "completion", principal.tenant_id, request_id, fingerprint),
            chain=chain,
            model_request=ModelRequest(messages, request.max_tokens, request.temperature, request.extra),
            retrieval=retrieval,
            rewrite=rewrite,
            citations=[_citation(p) for p in retrieval.passages],
            route=route,
            question=question,
            now=self._clock(),
            reservation=reservation,
        )

    def _extractive_answer(self, call: _Call, note: str) -> tuple[str, str, int, int]:
        answer = self._extractive.answer(call.question, call.retrieval.passages, [], note=note)
        return EXTRACTIVE_MODEL, answer.text, answer.input_tokens, answer.output_tokens

    def _degraded(self, call: _Call, error: Exception) -> tuple[str, str, int, int]:
        logger.warning("no model answered; the extractive responder does", extra={"error": str(error)})
        count(LLM_DEGRADED, 1)
        call.route = "degraded"
        return self._extractive_answer(call, DEGRADED_NOTE)

    def _finished(self, call: _Call, model: str, text: str, prompt: int, output: int) -> dict[str, Any]:
        """A whole chat.completion for an answer written here (extractive, degraded)."""
        self._meter(call, model, prompt, output)
        completion = _synthetic_completion(model, text, prompt, output)
        return {**completion, "docuchat": self._extension(call)}

    def _relay(self, call: _Call, model: str, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any] | str]:
        """Pass the model's chunks on under the answering model's name; meter what it reported, then [DONE].
        However the stream ends, the budget reservation is settled with what was metered."""
        try:
            yield from self._relayed(call, model, chunks)
        finally:
            self._settle(call)

    def _relayed(self, call: _Call, model: str, chunks: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any] | str]:
        include_usage = call.request.include_usage
        seen = _Seen()
        try:
            for chunk in chunks:
                outgoing = seen.take(chunk, model)
                if outgoing is None:
                    continue  # the usage chunk: passed on at the end, and only to a caller who asked for it
                if seen.finished and not include_usage and "docuchat" not in outgoing:
                    outgoing["docuchat"] = self._extension(call)
                yield outgoing
        except LLMError as error:
            logger.warning("the model broke off mid-answer", extra={"model": model, "error": str(error)})
            self._meter(call, model, *usage_or_estimate(None, call.model_request, seen.text))
            yield {"error": {"message": "The model stopped before finishing its answer.", **_BROKE_OFF}}
            return
        prompt, output = usage_or_estimate(seen.usage, call.model_request, seen.text)
        self._meter(call, model, prompt, output)
        closing = _chunk_frame(model)
        if not seen.finished:  # a stream that ended without saying why: close it properly
            closed = {**closing, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
            yield closed if include_usage else {**closed, "docuchat": self._extension(call)}
        if include_usage:
            reported = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
            yield {**closing, "choices": [], "usage": reported, "docuchat": self._extension(call)}
        yield "[DONE]"

    def _extension(self, call: _Call) -> dict[str, Any]:
        return {"route": call.route, "citations": call.citations}

    def _meter(self, call: _Call, model: str, prompt_tokens: int, completion_tokens: int) -> None:
        events = answer_events(
            call.principal,
            call.event_id,
            call.now,
            call.retrieval,
            call.rewrite,
            model,
            prompt_tokens,
            completion_tokens,
        )
        if events:
            self._usage.send(*events)
            call.metered_tokens += sum(e.total_tokens for e in events)
        count(CHAT_REQUESTS, 1)


def _refused(error: LLMError) -> InvalidInput:
    """The model refused the caller's request (a 400; the router raises nothing else): the caller hears why."""
    return InvalidInput(f"The model refused the request: {error}", param=error.param)


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return prompt_text([message]).strip()
    return ""


def _history(messages: list[dict[str, Any]], now: datetime) -> list[Message]:
    """The user and assistant turns before the last user message, as conversation history."""
    turns = [m for m in messages if m.get("role") in ("user", "assistant") and prompt_text([m]).strip()]
    return [Message(role=m["role"], content=prompt_text([m]), created_at=now) for m in turns[:-1]]


def _with_documents(messages: list[dict[str, Any]], passages: list[Passage]) -> list[dict[str, Any]]:
    """The passages, as a system message of delimited data, just before the last user message."""
    last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
    documents = {"role": "system", "content": f"{DOCUMENTS_PROMPT}\n\n{documents_block(passages)}"}
    return [*messages[:last_user], documents, *messages[last_user:]]


def _citation(passage: Passage) -> dict[str, Any]:
    return Citation.of(passage).model_dump(mode="json")


def _message_text(completion: dict[str, Any]) -> str:
    choices = completion.get("choices") or []
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    return str((message or {}).get("content") or "")


def _chunk_frame(model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{new_id('x')}",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
    }


def _synthetic_completion(model: str, text: str, prompt: int, output: int) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{new_id('x')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }


def _synthetic_chunks(model: str, text: str, prompt: int, output: int) -> Iterator[dict[str, Any]]:
    """An answer written here, as a model would stream it: the role, a few words at a time, the end, the usage."""
    frame = _chunk_frame(model)
    yield {**frame, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
    words = text.split(" ")
    for start in range(0, len(words), 4):
        piece = " ".join(words[start : start + 4]) + (" " if start + 4 < len(words) else "")
        yield {**frame, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
    yield {**frame, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    yield {
        **frame,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output},
    }
