"""The model's verdict that the passages do not answer the question.

Retrieval alone cannot tell a near-topic question nobody documented ("parental leave" when only annual leave is
written down) from a paraphrased one that is answered: both find passages that look alike (decision 10). The
model reading the passages can. It is told to reply with NOT_IN_DOCUMENTS alone when they do not contain the
answer; the service then answers its own "I don't know" (route `not_found`) with no citations, as it does when
retrieval finds nothing. The model's tokens are metered all the same: it did the work.

A streamed answer's first characters are held back while they may still be the verdict, so a reader never sees
it half-written; anything else is passed on as soon as it cannot be.
"""

from __future__ import annotations

NOT_IN_DOCUMENTS = "NOT_IN_DOCUMENTS"
# What a model may wrap the verdict in: markdown code or emphasis, quotes.
_WRAPPING = "`*\"' \t\r\n"


def _unwrapped(text: str) -> str:
    return text.lstrip(_WRAPPING)


def says_not_in_documents(text: str) -> bool:
    """True when a model's reply is the verdict (alone, or first, however wrapped)."""
    return _unwrapped(text).upper().startswith(NOT_IN_DOCUMENTS)


class VerdictGate:
    """Passes a streamed answer on, holding back its start while that may still become the verdict.

    Disabled (no passages were given, so there is no verdict to give), it passes everything at once. It also
    remembers whether the answer's citations went out (`cite`), since they go just before its first text.
    """

    def __init__(self, enabled: bool = True) -> None:
        self._held: list[str] = []
        self._open = not enabled
        self._cited = False

    def feed(self, piece: str) -> str:
        """The text to pass on now ("" while held back)."""
        if self._open:
            return piece
        self._held.append(piece)
        start = _unwrapped("".join(self._held)).upper()
        if NOT_IN_DOCUMENTS.startswith(start) or start.startswith(NOT_IN_DOCUMENTS):
            return ""
        return self._release()

    def finish(self) -> str:
        """At the end of the answer: what is still held, unless it is the verdict."""
        return "" if self.verdict else self._release()

    @property
    def verdict(self) -> bool:
        """True when the whole answer so far is the verdict."""
        return not self._open and says_not_in_documents("".join(self._held))

    def cite(self) -> bool:
        """True the first time it is asked: the moment to send the citations."""
        first, self._cited = not self._cited, True
        return first

    def _release(self) -> str:
        self._open = True
        held, self._held = "".join(self._held), []
        return held
