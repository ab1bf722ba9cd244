"""Hybrid retrieval: a tenant's chunks found by vector similarity and by keywords, fused by rank.

1. The question is embedded with the same embedder that embedded the documents.
2. The vector store returns the tenant's best rows by cosine similarity and by BM25.
3. Only rows that look relevant on their own count: similarity at least `retrieval_min_similarity`, or at
   least `retrieval_min_keyword_coverage` of the question's keyword weight. With none, nothing is cited and
   the chat answers that it does not know.
4. The rest are fused by reciprocal rank (each list contributes 1 / (60 + rank)), and the best k chunks are
   read from DynamoDB for their text.

The tenant id comes from the caller's key and is the only way into the store, whose keys all start with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shared.data.documents import DocumentRepository
from shared.embeddings import Embedder, EmbeddingError
from shared.models import Passage
from shared.observability import EMBEDDING_FAILURES, count, logger
from shared.settings import Settings
from shared.vectors import Hit

if TYPE_CHECKING:
    import numpy as np

    from shared.data.vectors import SearchHits

RRF_K = 60  # the usual constant of reciprocal rank fusion: damps the difference between the first few ranks
HITS_PER_RESULT = 5  # hits asked of each search (vector, keyword) per passage wanted, for fusion to choose from


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


class HybridRetriever:
    def __init__(
        self, settings: Settings, store: VectorSearch, embedder: Embedder, documents: DocumentRepository
    ) -> None:
        self._settings = settings
        self._store = store
        self._embedder = embedder
        self._documents = documents

    def retrieve(self, tenant_id: str, question: str, top_k: int) -> Retrieval:
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
        hits = self._store.search(tenant_id, query, question, max(HITS_PER_RESULT * top_k, 20))
        chosen = self._fuse(hits.vector, hits.keyword)[:top_k]
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
            found.fused += 1 / (RRF_K + rank + 1)
        for rank, hit in enumerate(keyword_hits):
            found = candidate(hit)
            found.coverage = hit.keyword_coverage
            found.fused += 1 / (RRF_K + rank + 1)
        relevant = [
            c
            for c in candidates.values()
            if c.similarity >= self._settings.retrieval_min_similarity
            or c.coverage >= self._settings.retrieval_min_keyword_coverage
        ]
        return sorted(relevant, key=lambda c: (-c.fused, c.document_id, c.chunk_index))
