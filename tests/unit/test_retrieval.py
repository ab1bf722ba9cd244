"""Hybrid retrieval: vector and keyword hits, kept when relevant on their own, fused by reciprocal rank."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from shared.data.vectors import SearchHits
from shared.models import Chunk
from shared.retrieval import KEYWORD_WEIGHT, RRF_K, VECTOR_WEIGHT, HybridRetriever, Retrieval
from shared.settings import Settings
from shared.terms import estimate_tokens
from shared.vectors import Hit
from tests.support.embedders import HashingEmbedder

TENANT = "t1234567890"
QUESTION = "How long do refunds take?"


def vector(document_id: str, chunk_index: int, similarity: float = 0.8) -> Hit:
    return Hit(document_id=document_id, chunk_index=chunk_index, similarity=similarity)


def keyword(document_id: str, chunk_index: int, coverage: float = 0.9) -> Hit:
    return Hit(document_id=document_id, chunk_index=chunk_index, keyword_score=3.0, keyword_coverage=coverage)


class FakeStore:
    """Answers every search with the hits it was given, and remembers what it was asked."""

    def __init__(self, vector_hits: list[Hit] | None = None, keyword_hits: list[Hit] | None = None) -> None:
        self.hits = SearchHits(vector=vector_hits or [], keyword=keyword_hits or [])
        self.asked: list[dict[str, Any]] = []

    def search(self, tenant_id: str, query: np.ndarray | None, question: str, k: int) -> SearchHits:
        self.asked.append({"tenant_id": tenant_id, "query": query, "question": question, "k": k})
        return self.hits


class FakeDocuments:
    """Every chunk exists unless listed as deleted; remembers whose chunks were read."""

    def __init__(self, deleted: set[tuple[str, int]] | None = None) -> None:
        self.deleted = deleted or set()
        self.asked: list[tuple[str, list[tuple[str, int]]]] = []

    def get_chunks(self, tenant_id: str, wanted: list[tuple[str, int]]) -> dict[tuple[str, int], Chunk]:
        self.asked.append((tenant_id, list(wanted)))
        return {
            (document_id, index): Chunk(
                tenant_id=tenant_id, document_id=document_id, index=index, title="Doc", text=f"{document_id}#{index}"
            )
            for document_id, index in wanted
            if (document_id, index) not in self.deleted
        }


def retrieve(
    store: FakeStore,
    *,
    documents: FakeDocuments | None = None,
    embedder: HashingEmbedder | None = None,
    top_k: int = 5,
    tenant_id: str = TENANT,
    min_similarity: float = 0.3,
    min_coverage: float = 0.5,
) -> Retrieval:
    config = Settings(retrieval_min_similarity=min_similarity, retrieval_min_keyword_coverage=min_coverage)
    repository: Any = documents or FakeDocuments()  # stands in for DocumentRepository: only get_chunks is used
    retriever = HybridRetriever(config, store, embedder or HashingEmbedder(), repository)
    return retriever.retrieve(tenant_id, QUESTION, top_k)


def found(retrieval: Retrieval) -> list[tuple[str, int]]:
    return [(p.chunk.document_id, p.chunk.index) for p in retrieval.passages]


class TestFusion:
    def test_a_chunk_found_by_both_searches_outranks_chunks_found_by_one(self) -> None:
        store = FakeStore(
            vector_hits=[vector("da", 0), vector("db", 1), vector("dc", 2)],
            keyword_hits=[keyword("dd", 3), keyword("dc", 2)],
        )
        retrieval = retrieve(store)
        assert found(retrieval)[0] == ("dc", 2)  # third and second, yet ahead of two firsts
        assert set(found(retrieval)[1:]) == {("da", 0), ("dd", 3)}  # the first of each list; db is far below
        assert retrieval.passages[0].score == round(VECTOR_WEIGHT / (RRF_K + 3) + KEYWORD_WEIGHT / (RRF_K + 2), 6)

    def test_meaning_weighs_more_than_shared_words_and_ties_are_broken_by_document_and_chunk(self) -> None:
        store = FakeStore(
            vector_hits=[vector("db", 1), vector("da", 9)], keyword_hits=[keyword("dc", 5), keyword("da", 8)]
        )
        assert found(retrieve(store)) == [("db", 1), ("da", 9), ("dc", 5)]  # ("da", 8) is under the floor

    def test_a_hit_below_both_thresholds_is_dropped(self) -> None:
        store = FakeStore(
            vector_hits=[vector("da", 0, similarity=0.29), vector("db", 0, similarity=0.31)],
            keyword_hits=[keyword("dc", 0, coverage=0.51), keyword("da", 0, coverage=0.49)],
        )
        assert sorted(found(retrieve(store))) == [("db", 0), ("dc", 0)]

    def test_a_hit_relevant_by_one_measure_is_kept(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0, similarity=0.9)], keyword_hits=[keyword("da", 0, coverage=0.1)])
        assert found(retrieve(store)) == [("da", 0)]
        store = FakeStore(vector_hits=[vector("da", 0, similarity=0.1)], keyword_hits=[keyword("da", 0, coverage=0.9)])
        assert found(retrieve(store)) == [("da", 0)]

    def test_nothing_relevant_gives_no_passages_and_reads_no_chunk(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0, similarity=0.05)], keyword_hits=[keyword("db", 1, 0.1)])
        documents = FakeDocuments()
        assert retrieve(store, documents=documents).passages == []
        assert all(not wanted for _, wanted in documents.asked)

    def test_the_thresholds_come_from_the_settings(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0, similarity=0.25)], keyword_hits=[keyword("db", 0, 0.45)])
        assert found(retrieve(store)) == []
        store = FakeStore(vector_hits=[vector("da", 0, similarity=0.25)], keyword_hits=[keyword("db", 0, 0.45)])
        lenient = retrieve(store, min_similarity=0.2, min_coverage=0.4)
        assert sorted(found(lenient)) == [("da", 0), ("db", 0)]

    def test_top_k_is_respected(self) -> None:
        store = FakeStore(vector_hits=[vector(f"d{i}", i) for i in range(8)], keyword_hits=[keyword("d7", 7)])
        documents = FakeDocuments()
        retrieval = retrieve(store, documents=documents, top_k=2)
        assert found(retrieval) == [("d7", 7), ("d0", 0)]
        assert documents.asked == [(TENANT, [("d7", 7), ("d0", 0)])]  # only the chosen chunks are read
        assert store.asked[0]["k"] >= 2


class TestDiversity:
    def test_each_documents_best_chunk_comes_before_a_second_chunk_of_any(self) -> None:
        store = FakeStore(vector_hits=[vector("da", i) for i in range(6)] + [vector("db", 0), vector("dc", 0)])
        chosen = found(retrieve(store))
        assert chosen == [("da", 0), ("da", 1), ("db", 0), ("dc", 0)]  # in order of score; two of da at most
        assert len({document for document, _ in chosen}) == 3

    def test_at_most_top_k_passages_and_none_far_below_the_best(self) -> None:
        hits = [vector(f"d{i}", 0) for i in range(40)]
        assert len(found(retrieve(FakeStore(vector_hits=hits)))) == 5
        # Rank 40 of one list is worth under 0.7 of rank 1 of both: not cited, however many are wanted.
        store = FakeStore(vector_hits=[vector("da", 0), *hits], keyword_hits=[keyword("da", 0)])
        assert ("d39", 0) not in found(retrieve(store, top_k=20))

    def test_the_first_of_the_keyword_search_is_kept_even_far_below_the_vector_scores(self) -> None:
        # An exact identifier that only keyword search finds is still cited.
        store = FakeStore(
            vector_hits=[vector("da", 0), vector("db", 0)], keyword_hits=[keyword("da", 0), keyword("dz", 7)]
        )
        store.hits = SearchHits(vector=store.hits.vector, keyword=[keyword("dz", 7), keyword("da", 0)])
        assert ("dz", 7) in found(retrieve(store))


class TestTenantsAndChunks:
    def test_the_store_and_the_documents_are_asked_for_the_callers_tenant_only(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0)])
        documents = FakeDocuments()
        retrieval = retrieve(store, documents=documents, tenant_id="t0000000042")
        assert [asked["tenant_id"] for asked in store.asked] == ["t0000000042"]
        assert [tenant for tenant, _ in documents.asked] == ["t0000000042"]
        assert retrieval.passages[0].chunk.tenant_id == "t0000000042"
        assert store.asked[0]["question"] == QUESTION

    def test_a_chunk_deleted_since_the_index_was_loaded_is_skipped(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0), vector("db", 1), vector("dc", 2)])
        retrieval = retrieve(store, documents=FakeDocuments(deleted={("db", 1)}))
        assert found(retrieval) == [("da", 0), ("dc", 2)]


class TestEmbedding:
    def test_the_question_is_embedded_and_its_tokens_and_model_are_reported(self) -> None:
        store = FakeStore(vector_hits=[vector("da", 0)])
        embedder = HashingEmbedder(dimensions=32, model="hashing-v2")
        retrieval = retrieve(store, embedder=embedder)
        query = store.asked[0]["query"]
        assert query is not None and query.shape == (32,)
        assert float(np.linalg.norm(query)) == pytest.approx(1.0)
        assert embedder.calls == [1]
        assert retrieval.embedding_tokens == estimate_tokens(QUESTION) > 0
        assert retrieval.embedding_model == "hashing-v2"
        assert retrieval.notes == []

    def test_when_embedding_fails_keyword_hits_still_answer(self) -> None:
        store = FakeStore(keyword_hits=[keyword("da", 0)])
        embedder = HashingEmbedder()
        embedder.fail_calls = 1
        retrieval = retrieve(store, embedder=embedder)
        assert store.asked[0]["query"] is None
        assert found(retrieval) == [("da", 0)]
        assert retrieval.notes == ["keyword-only"]
        assert (retrieval.embedding_tokens, retrieval.embedding_model) == (0, "")
