"""Follow-up questions made standalone before retrieval: "And how long does delivery take for it?" means nothing
to a search index until "it" is known.

Only questions that lean on the conversation are rewritten (a pronoun, an opening "and"/"what about", or very
few words), and only when there is a conversation. With a model configured, the model rewrites them (metered as
chat usage of its own); offline, or when the model fails, a heuristic puts the previous question's words in
front of the new one. Retrieval gets the standalone query; the model still answers the question as asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shared.chat.prompts import rewrite_messages
from shared.chat.responders import LLMError, ModelRequest
from shared.chat.router import AllModelsFailed, ModelRouter
from shared.models import Message
from shared.observability import logger

# Words that point back into the conversation (English, and the commonest Persian ones).
_REFERRING = frozenset(
    {
        *("it", "its", "it's", "they", "them", "their", "theirs", "this", "that", "these", "those", "there"),
        *("he", "she", "him", "her", "his", "one", "ones", "same", "former", "latter"),
        *("آن", "این", "آنها", "اینها", "او"),
    }
)
_OPENERS = re.compile(r"^\s*(and|but|also|so|then|what about|how about|and what|same for|و|پس)\b", re.IGNORECASE)
_WORD = re.compile(r"\w+", re.UNICODE)
SHORT_QUESTION_WORDS = 4
REWRITE_MAX_TOKENS = 64


@dataclass(frozen=True)
class Rewrite:
    query: str
    model: str = ""  # the model that rewrote it; empty for the heuristic
    input_tokens: int = 0
    output_tokens: int = 0


def leans_on_conversation(question: str, history: Sequence[Message]) -> bool:
    if not any(m.role == "user" for m in history):
        return False
    words = [w.casefold() for w in _WORD.findall(question)]
    return bool(_OPENERS.match(question)) or len(words) <= SHORT_QUESTION_WORDS or bool(_REFERRING & set(words))


def heuristic_query(question: str, history: Sequence[Message]) -> str:
    """The last earlier question, then this one: the earlier one names what this one refers to."""
    previous = next((m.content for m in reversed(history) if m.role == "user"), "")
    return f"{previous} {question}".strip()


class QueryRewriter:
    def __init__(self, router: ModelRouter | None, chain: Callable[[], list[str]]) -> None:
        self._router = router
        self._chain = chain

    def standalone(self, question: str, history: Sequence[Message]) -> Rewrite:
        if not leans_on_conversation(question, history):
            return Rewrite(query=question)
        if self._router is not None:
            request = ModelRequest(
                messages=rewrite_messages(question, history), max_tokens=REWRITE_MAX_TOKENS, temperature=0.0
            )
            try:
                model, completion = self._router.complete(self._chain(), request)
                text = _content(completion)
                usage = completion.get("usage") or {}
                if text:
                    return Rewrite(
                        query=text,
                        model=model,  # the chain's name for it, which prices and usage are keyed by
                        input_tokens=int(usage.get("prompt_tokens") or 0),
                        output_tokens=int(usage.get("completion_tokens") or 0),
                    )
            except (LLMError, AllModelsFailed) as error:
                logger.info(
                    "rewriting a follow-up with the model failed; using the heuristic", extra={"error": str(error)}
                )
        return Rewrite(query=heuristic_query(question, history))


def _content(completion: dict[str, object]) -> str:
    choices = completion.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    return " ".join(str(content).split())[:500] if content else ""
