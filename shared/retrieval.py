"""Hybrid retrieval: a tenant's chunks found by vector similarity and by keywords, fused by rank.

1. The question is embedded with the same embedder that embedded the documents.
2. The vector store returns the tenant's best rows by cosine similarity and by BM25.
3. Only rows that look relevant on their own count: similarity at least `retrieval_min_similarity`, or at
   least `retrieval_min_keyword_coverage` of the question's keyword weight. With none, nothing is cited and
   the chat answers that it does not know.
4. The rest are fused by weighted reciprocal rank: the vector list contributes 2 / (60 + rank), the keyword
   list 1 / (60 + rank) (tuned on the evaluation sets, docs/decisions/0010-answer-quality.md).
5. The citations are diversified: the best chunk of each document first, then second chunks of those
   documents; at most top_k in all, in order of score, and none under RELATIVE_FLOOR of the best chunk's
   score unless it came first in either search. Four passages of one document no longer crowd out the other
   document that answers.
   Only the chosen chunks are read from DynamoDB for their text.

The tenant id comes from the caller's key and is the only way into the store, whose keys all start with it.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shared.data.documents import DocumentRepository
from shared.embeddings import Embedder, EmbeddingError
from shared.models import Passage
from shared.observability import EMBEDDING_FAILURES, RAG_QUERIES, count, logger
from shared.settings import Settings
from shared.vectors import Hit

if TYPE_CHECKING:
    import numpy as np

    from shared.data.vectors import SearchHits

RRF_K = 60  # the usual constant of reciprocal rank fusion: damps the difference between the first few ranks
HITS_PER_RESULT = 10  # hits asked of each search (vector, keyword) per passage wanted, for fusion to choose from
# Fusion weights: meaning counts twice what shared words do (hit@1 on the tuning sets: equal 0.94-0.96, 2:1
# 0.96, vector alone 0.90, keywords alone 0.76; docs/decisions/0010).
VECTOR_WEIGHT = 2.0
KEYWORD_WEIGHT = 1.0
RELATIVE_FLOOR = 0.7  # a chunk is cited only when its fused score is at least this share of the best one's
CHUNKS_PER_DOCUMENT = 2  # at most, among the citations


class VectorSearch(Protocol):
    """What retrieval needs of a vector store (see shared/data/vectors.py for ours)."""

    def search(self, tenant_id: str, query: np.ndarray | None, question: str, k: int) -> SearchHits: ...


@dataclass(frozen=True)
class Retrieval:
    passages: list[Passage]
    embedding_tokens: int = 0  # spent embedding the question: metered as usage
    embedding_model: str = ""
    notes: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    document_id: str
    chunk_index: int
    similarity: float = 0.0
    coverage: float = 0.0
    fused: float = 0.0
    best_rank: int = 1_000_000  # its best place in either list, from 0


class HybridRetriever:
    def __init__(
        self, settings: Settings, store: VectorSearch, embedder: Embedder, documents: DocumentRepository
    ) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._documents = documents

    def retrieve(self, tenant_id: str, question: str, top_k: int) -> Retrieval:
        count(RAG_QUERIES, 1)
        query, tokens, notes = None, 0, []
        try:
            embedded = self._embedder.embed([question])
            tokens = embedded.tokens
            if embedded.vectors[0].any():  # a zero vector carries no meaning: keyword search alone
                query = embedded.vectors[0]
        except EmbeddingError as error:
            # Keyword search still answers; the question is not lost to a flaky embeddings endpoint.
            logger.warning("embedding the question failed; searching by keyword only", extra={"error": str(error)})
            count(EMBEDDING_FAILURES, 1)
            notes.append("keyword-only")
        hits = self._store.search(tenant_id, query, question, max(HITS_PER_RESULT * top_k, 50))
        chosen = diversify(self._fuse(hits.vector, hits.keyword), top_k)
        chunks = self._documents.get_chunks(tenant_id, [(c.document_id, c.chunk_index) for c in chosen])
        passages = [
            Passage(chunk=chunks[(c.document_id, c.chunk_index)], score=round(c.fused, 6))
            for c in chosen
            if (c.document_id, c.chunk_index) in chunks  # a chunk deleted since the index was loaded
        ]
        model = self._embedder.model if query is not None else ""
        return Retrieval(passages=passages, embedding_tokens=tokens, embedding_model=model, notes=notes)

    def _fuse(self, vector_hits: list[Hit], keyword_hits: list[Hit]) -> list[_Candidate]:
        candidates: dict[tuple[str, int], _Candidate] = {}

        def candidate(hit: Hit) -> _Candidate:
            key = (hit.document_id, hit.chunk_index)
            return candidates.setdefault(key, _Candidate(hit.document_id, hit.chunk_index))

        for rank, hit in enumerate(vector_hits):
            found = candidate(hit)
            found.similarity = hit.similarity
            found.fused += VECTOR_WEIGHT / (RRF_K + rank + 1)
            found.best_rank = min(found.best_rank, rank)
        for rank, hit in enumerate(keyword_hits):
            found = candidate(hit)
            found.coverage = hit.keyword_coverage
            found.fused += KEYWORD_WEIGHT / (RRF_K + rank + 1)
            found.best_rank = min(found.best_rank, rank)
        relevant = [
            c
            for c in candidates.values()
            if c.similarity >= self._settings.retrieval_min_similarity
            or c.coverage >= self._settings.retrieval_min_keyword_coverage
        ]
        return sorted(relevant, key=lambda c: (-c.fused, c.document_id, c.chunk_index))


def diversify(ranked: list[_Candidate], top_k: int) -> list[_Candidate]:
    """At most top_k of the ranked candidates: each document's best first, then their second best, never one
    scoring under RELATIVE_FLOOR of the best (unless it came first in a search); in order of score."""
    if not ranked:
        return []
    floor = RELATIVE_FLOOR * ranked[0].fused
    eligible = [c for c in ranked if c.fused >= floor or c.best_rank == 0]
    chosen: list[_Candidate] = []
    taken: set[int] = set()  # positions in eligible
    per_document: Counter[str] = Counter()
    for round_ in range(CHUNKS_PER_DOCUMENT):  # round 0 takes each document's best chunk, round 1 its second
        for position, c in enumerate(eligible):
            if len(chosen) == top_k:
                break
            if position not in taken and per_document[c.document_id] == round_:
                chosen.append(c)
                taken.add(position)
                per_document[c.document_id] += 1
    return sorted(chosen, key=lambda c: (-c.fused, c.document_id, c.chunk_index))
