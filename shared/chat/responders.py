"""Who writes the answer: an OpenAI-compatible model (through the official client), or the extractive responder.

Without OPENAI_API_KEY the extractive responder quotes the best passages; its model name says so. It is also
what answers, with `route: "degraded"`, when every model of the chain has failed.

`OpenAIUpstream` makes one attempt per call (the client's own retries are off): retrying, backing off and
falling back are the router's (shared/chat/router.py), so that every failure is seen and counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.data.openai import OpenAIConnections, openai_client, openai_module
from shared.lazy import lazy
from shared.models import Message, Passage, Record
from shared.settings import Settings
from shared.terms import terms

EXTRACTIVE_MODEL = "docuchat-extractive"
NO_KEY_NOTE = "(Answered by DocuChat's built-in extractive responder: no OpenAI key is configured.)"
DEGRADED_NOTE = "(The language model is unavailable right now, so DocuChat quoted your documents instead.)"
NOT_FOUND_ANSWER = (
    "I don't know: none of your documents seem to cover that. Try rephrasing, or upload a document that answers it."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# Statuses of a failed attempt worth another try: rate limited, timed out, conflict, or the server's own fault.
_RETRYABLE_STATUSES = frozenset({408, 409, 429})


class Answer(Record):
    text: str
    model: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class ModelRequest:
    """One call to a chat model, whichever door it came through."""

    messages: list[dict[str, Any]]
    max_tokens: int
    temperature: float | None = None
    # Standard fields passed through as the caller gave them: stop, response_format, tools, tool_choice, ...
    extra: dict[str, Any] = field(default_factory=dict)


class LLMError(Exception):
    """A model call failed.

    - `retryable`: the same call may succeed later (429, 408, 409, 5xx, timeouts, lost connections);
    - `caller_error`: the model refused the request itself (a 400: bad tools, a context too long): the caller's
      to fix, so it is neither retried nor a reason to try another model;
    - `retry_after`: seconds the model asked us to wait, when it said.
    """

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        caller_error: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.caller_error = caller_error
        self.status = status
        self.retry_after = retry_after
        self.param = param


class Upstream(Protocol):
    """An OpenAI-compatible chat model endpoint."""

    def complete(self, model: str, request: ModelRequest) -> dict[str, Any]: ...

    def stream(self, model: str, request: ModelRequest) -> Iterator[dict[str, Any]]: ...


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; used only where no model reports usage.
    return max(1, round(len(text) / 4))


def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    """The text of a prompt, for estimating its tokens."""
    parts = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list):
            parts += [str(p.get("text", "")) for p in content if isinstance(p, dict)]
    return "\n".join(parts)


def usage_or_estimate(usage: dict[str, Any] | None, request: ModelRequest, text: str) -> tuple[int, int]:
    """(prompt, completion) tokens as the model reported them; estimated only when it reported nothing, so work
    that was done is never metered as zero."""
    if usage and ("prompt_tokens" in usage or "completion_tokens" in usage):
        return int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
    return estimate_tokens(prompt_text(request.messages)), estimate_tokens(text) if text else 0


class ExtractiveResponder:
    """Quotes the sentence of each of the best passages that shares most words with the question."""

    model = EXTRACTIVE_MODEL

    def text(self, question: str, passages: Sequence[Passage], note: str = NO_KEY_NOTE) -> str:
        if not passages:
            return NOT_FOUND_ANSWER + " " + note
        wanted = set(terms(question))
        lines = []
        for n, passage in enumerate(passages[:3], start=1):
            sentences = _SENTENCE.split(passage.chunk.text)
            best = max(sentences, key=lambda s: len(wanted & set(terms(s))))
            lines.append(f"- {best.strip()} [{n}]")
        return "From your documents:\n" + "\n".join(lines) + "\n\n" + note

    def answer(
        self, question: str, passages: Sequence[Passage], history: Sequence[Message], note: str = NO_KEY_NOTE
    ) -> Answer:
        text = self.text(question, passages, note)
        prompt = question + "".join(p.chunk.text for p in passages) + "".join(m.content for m in history)
        return Answer(
            text=text, model=self.model, input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text)
        )


class OpenAIUpstream:
    """Chat completions through the official client: one attempt a call, errors classified for the router."""

    def __init__(self, settings: Settings, connections: OpenAIConnections | None = None) -> None:
        self._settings = settings
        self._connections = connections

    @lazy
    def _client(self) -> Any:
        return openai_client(self._settings, self._settings.llm_timeout_seconds, 0, self._connections)

    def complete(self, model: str, request: ModelRequest) -> dict[str, Any]:
        with _classified():
            completion = self._client.chat.completions.create(model=model, **_arguments(request))
        return dict(completion.model_dump(mode="json", exclude_unset=True))

    def stream(self, model: str, request: ModelRequest) -> Iterator[dict[str, Any]]:
        """The chunks as JSON, ending with the usage chunk (always asked for: it is what gets metered)."""
        with _classified():
            chunks = self._client.chat.completions.create(
                model=model, stream=True, stream_options={"include_usage": True}, **_arguments(request)
            )
        return _classified_iteration(chunks)


def _arguments(request: ModelRequest) -> dict[str, Any]:
    arguments: dict[str, Any] = {"messages": request.messages, "max_completion_tokens": request.max_tokens}
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
    return arguments | request.extra


def _classified_iteration(chunks: Any) -> Iterator[dict[str, Any]]:
    with _classified():
        for chunk in chunks:
            yield dict(chunk.model_dump(mode="json", exclude_unset=True))


@contextmanager
def _classified() -> Iterator[None]:
    """Turns the client's exceptions into LLMError, saying whether another attempt could help."""
    import httpx

    openai = openai_module()

    try:
        yield
    except openai.APITimeoutError as error:  # (a subclass of APIConnectionError)
        raise LLMError(f"the model timed out: {error}", retryable=True) from error
    except openai.APIConnectionError as error:
        raise LLMError(f"the model could not be reached: {error}", retryable=True) from error
    except openai.APIStatusError as error:
        status = error.status_code
        body = error.body if isinstance(error.body, dict) else {}
        param = body.get("param")
        raise LLMError(
            f"{type(error).__name__} ({status}): {body.get('message') or error.message}",
            retryable=status in _RETRYABLE_STATUSES or status >= 500,
            caller_error=status in (400, 413, 422),
            status=status,
            retry_after=_retry_after(error.response.headers),
            param=param if isinstance(param, str) else None,
        ) from error
    except openai.OpenAIError as error:  # a stream that broke off with an error event, and the like
        raise LLMError(f"{type(error).__name__}: {error}", retryable=True) from error
    except httpx.HTTPError as error:  # a stream whose connection dropped mid-body (the client does not wrap it)
        raise LLMError(f"the model's stream broke off: {type(error).__name__}: {error}", retryable=True) from error


def _retry_after(headers: Any) -> float | None:
    """Seconds from `retry-after-ms` or `retry-after` (seconds), as OpenAI sends them."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name) if headers is not None else None
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue  # an HTTP date: rare from model APIs, and the backoff covers it
    return None
