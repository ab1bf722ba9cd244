"""Answering a question from retrieved passages: the OpenAI responder, and the built-in extractive one.

Without OPENAI_API_KEY the extractive responder quotes the best passages; its model name says so.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

from shared.lazy import lazy
from shared.models import Message, Passage, Record
from shared.settings import Settings
from shared.terms import terms

EXTRACTIVE_MODEL = "docuchat-extractive"
NO_KEY_NOTE = "(Answered by DocuChat's built-in extractive responder: no OpenAI key is configured.)"
SYSTEM_PROMPT = (
    "You are DocuChat, an assistant that answers questions using the tenant's documents. "
    "Answer only from the numbered context passages when they are relevant, and cite them like [1]. "
    "If the context does not contain the answer, say that you don't know."
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class Answer(Record):
    text: str
    model: str
    input_tokens: int
    output_tokens: int


class LLMError(Exception):
    """The model could not be reached or answered with an error, after the client's retries."""


class Responder(Protocol):
    def answer(self, question: str, passages: Sequence[Passage], history: Sequence[Message]) -> Answer: ...


def estimate_tokens(text: str) -> int:
    # About four characters a token for English text; used only where no model reports usage.
    return max(1, round(len(text) / 4))


def context_block(passages: Sequence[Passage]) -> str:
    return "\n\n".join(f"[{n}] {p.chunk.title}: {p.chunk.text}" for n, p in enumerate(passages, start=1))


class ExtractiveResponder:
    model = EXTRACTIVE_MODEL

    def answer(self, question: str, passages: Sequence[Passage], history: Sequence[Message]) -> Answer:
        if passages:
            wanted = set(terms(question))
            lines = []
            for n, passage in enumerate(passages[:3], start=1):
                sentences = _SENTENCE.split(passage.chunk.text)
                best = max(sentences, key=lambda s: len(wanted & set(terms(s))))
                lines.append(f"- {best.strip()} [{n}]")
            text = "From your documents:\n" + "\n".join(lines) + "\n\n" + NO_KEY_NOTE
        else:
            text = "I don't know: none of your documents seem to cover that. " + NO_KEY_NOTE
        prompt = question + context_block(passages) + "".join(m.content for m in history)
        return Answer(
            text=text, model=self.model, input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text)
        )


class OpenAIResponder:
    """Chat completions through the official client; timeouts and retries come from settings."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.model = settings.llm_model

    @lazy
    def _client(self) -> Any:
        return openai_client(self._settings, self._settings.llm_timeout_seconds, self._settings.llm_max_retries)

    def answer(self, question: str, passages: Sequence[Passage], history: Sequence[Message]) -> Answer:
        import openai

        messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_PROMPT}]
        messages += [{"role": m.role, "content": m.content} for m in history]
        user = f"Context:\n{context_block(passages)}\n\nQuestion: {question}" if passages else question
        messages.append({"role": "user", "content": user})
        try:
            completion = self._client.chat.completions.create(
                model=self.model,
                messages=messages,
                max_completion_tokens=self._settings.llm_max_output_tokens,
                temperature=self._settings.llm_temperature,
            )
        except openai.OpenAIError as error:
            raise LLMError(f"{type(error).__name__}: {error}") from error
        text = (completion.choices[0].message.content or "").strip() if completion.choices else ""
        usage = completion.usage
        return Answer(
            text=text,
            model=completion.model or self.model,
            input_tokens=usage.prompt_tokens if usage else estimate_tokens(user),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
        )


def openai_client(settings: Settings, timeout_seconds: float, max_retries: int) -> Any:
    """The official client for the configured key and base URL; `openai` is imported on first use, which keeps
    cold starts without a key fast. Its retries back off on 408, 409, 429 and 5xx."""
    import openai

    key = settings.openai_api_key
    return openai.OpenAI(
        api_key=key.get_secret_value() if key else None,
        base_url=settings.openai_base_url,
        timeout=timeout_seconds,
        max_retries=max_retries,
    )


def build_responder(settings: Settings) -> Responder:
    return OpenAIResponder(settings) if settings.llm_enabled else ExtractiveResponder()
