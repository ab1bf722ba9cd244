"""Lexical retrieval: BM25 over a tenant's chunks. (Hybrid vector retrieval comes later.)"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from shared.models import Chunk, Passage

_WORD = re.compile(r"\w+", re.UNICODE)
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "how",
        "i",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "our",
        "the",
        "this",
        "to",
        "was",
        "what",
        "when",
        "where",
        "which",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


def terms(text: str) -> list[str]:
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


class LexicalRetriever:
    def __init__(self, k1: float = 1.5, b: float = 0.75) -> None:
        self._k1 = k1
        self._b = b

    def search(self, question: str, chunks: Sequence[Chunk], top_k: int) -> list[Passage]:
        query = set(terms(question))
        if not query or not chunks:
            return []
        documents = [Counter(terms(f"{chunk.title} {chunk.text}")) for chunk in chunks]
        average_length = sum(sum(d.values()) for d in documents) / len(documents) or 1.0
        document_frequency = Counter(term for d in documents for term in query if term in d)
        scored = []
        for chunk, counts in zip(chunks, documents, strict=True):
            length = sum(counts.values())
            score = 0.0
            for term in query:
                frequency = counts.get(term, 0)
                if not frequency:
                    continue
                df = document_frequency[term]
                idf = math.log(1 + (len(chunks) - df + 0.5) / (df + 0.5))
                score += (
                    idf
                    * frequency
                    * (self._k1 + 1)
                    / (frequency + self._k1 * (1 - self._b + self._b * length / average_length))
                )
            if score > 0:
                scored.append(Passage(chunk=chunk, score=round(score, 4)))
        scored.sort(key=lambda p: (-p.score, p.chunk.document_id, p.chunk.index))
        return scored[:top_k]
