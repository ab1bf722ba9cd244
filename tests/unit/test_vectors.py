"""The in-memory vector index: int8 quantization, segment files, vector search and BM25 keyword search."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from shared.vectors import SEGMENT_FORMAT, Segment, TenantIndex, keyword_stats, quantize

TENANT = "t1234567890"
MODEL = "test-model"


def unit_rows(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_unit(rng: np.random.Generator, count: int, dimensions: int) -> np.ndarray:
    return unit_rows(rng.normal(size=(count, dimensions)))


def clustered(rng: np.random.Generator, count: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around a few centres, as embeddings of documents (and questions) on a few topics are."""
    clusters, dimensions = centres.shape
    return unit_rows(centres[rng.integers(0, clusters, count)] + 0.5 * rng.normal(size=(count, dimensions)))


def segment(
    document_id: str,
    vectors: np.ndarray,
    texts: Sequence[str] | None = None,
    *,
    tenant_id: str = TENANT,
    model: str = MODEL,
    first_chunk: int = 0,
) -> Segment:
    return Segment.build(
        tenant_id=tenant_id,
        document_id=document_id,
        generation="g1",
        model=model,
        chunk_indexes=list(range(first_chunk, first_chunk + len(vectors))),
        vectors=vectors,
        texts=list(texts) if texts is not None else ["filler"] * len(vectors),
    )


def keyword_index(texts: Sequence[str]) -> TenantIndex:
    """One document, one chunk a text, vectors that do not matter."""
    vectors = random_unit(np.random.default_rng(0), len(texts), 16)
    return TenantIndex(TENANT, MODEL, 16, [segment("d1", vectors, texts)])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


class TestQuantization:
    def test_int8_codes_times_the_scale_point_where_the_vectors_did(self) -> None:
        vectors = random_unit(np.random.default_rng(1), 200, 384)
        codes, scales = quantize(vectors)
        assert codes.dtype == np.int8 and scales.dtype == np.float32 and scales.shape == (200,)
        restored = codes.astype(np.float32) * scales[:, None]
        assert cosine(vectors, restored).min() > 0.999
        assert (np.abs(restored - vectors) <= scales[:, None] * 0.5001).all()  # rounded to the nearest code
        assert np.abs(codes).max() == 127  # each row's peak uses the whole range

    def test_a_zero_vector_quantizes_to_zeros_without_dividing_by_zero(self) -> None:
        vectors = np.zeros((2, 8), dtype=np.float32)
        vectors[1, 3] = 0.5
        with np.errstate(all="raise"):
            codes, scales = quantize(vectors)
        assert not codes[0].any() and np.isfinite(scales).all()
        assert codes[1, 3] == 127 and codes[1].sum() == 127

    def test_no_vectors_quantize_to_empty_arrays(self) -> None:
        codes, scales = quantize(np.zeros((0, 8), dtype=np.float32))
        assert codes.shape == (0, 8) and scales.shape == (0,)


class TestSegments:
    def test_a_segment_survives_its_file_with_every_array_and_its_metadata(self) -> None:
        texts = ["Refunds take 14 days.", "Shipping is free.", "Warranty: two years, parts and labour."]
        original = segment("d1", random_unit(np.random.default_rng(2), 3, 32), texts, first_chunk=7)
        restored = Segment.from_bytes(original.to_bytes())
        assert (restored.tenant_id, restored.document_id, restored.generation, restored.model) == (
            TENANT,
            "d1",
            "g1",
            MODEL,
        )
        for name in ("chunk_indexes", "codes", "scales", "term_hashes", "term_freqs", "term_counts", "lengths"):
            before, after = getattr(original, name), getattr(restored, name)
            assert after.dtype == before.dtype and np.array_equal(after, before), name
        assert restored.chunk_indexes.tolist() == [7, 8, 9]
        assert (restored.rows, restored.dimensions) == (3, 32)

    def test_a_file_of_an_unknown_format_is_refused(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr("shared.vectors.SEGMENT_FORMAT", SEGMENT_FORMAT + 1)
        body = segment("d1", random_unit(np.random.default_rng(3), 2, 8)).to_bytes()
        monkeypatch.setattr("shared.vectors.SEGMENT_FORMAT", SEGMENT_FORMAT)
        with pytest.raises(ValueError, match="format"):
            Segment.from_bytes(body)

    def test_bytes_that_are_not_a_segment_are_refused(self) -> None:
        with pytest.raises(ValueError):
            Segment.from_bytes(b"certainly not a vector segment")

    def test_a_segment_of_no_rows_survives_its_file(self) -> None:
        empty = segment("d1", np.zeros((0, 8), dtype=np.float32), [])
        restored = Segment.from_bytes(empty.to_bytes())
        assert (restored.rows, restored.dimensions, restored.term_hashes.size) == (0, 8, 0)

    def test_a_segment_needs_a_vector_and_a_text_per_chunk(self) -> None:
        with pytest.raises(ValueError):
            segment("d1", random_unit(np.random.default_rng(4), 2, 8), ["only one text"])

    def test_keyword_statistics_count_distinct_terms_without_stopwords(self) -> None:
        hashes, freqs, counts, lengths = keyword_stats(["The refund and the refunds", "", "Shipping"])
        assert counts.tolist() == [1, 0, 1]  # "refunds" folds into "refund"; "the", "and" are stopwords
        assert lengths.tolist() == [2, 0, 1]
        assert freqs.tolist() == [2, 1] and len(hashes) == 2


class TestVectorSearch:
    @pytest.mark.parametrize(
        ("dimensions", "rows"),
        [
            (128, 3_000),  # one Hamming pass over every row's sign bits
            (384, 6_000),  # over 256 dimensions and 16 x 300 candidates: a first pass on the first 256 bits
        ],
    )
    def test_recall_at_10_against_exact_search_is_at_least_0_9(self, dimensions: int, rows: int) -> None:
        rng = np.random.default_rng(5)
        centres = rng.normal(size=(20, dimensions))
        vectors = clustered(rng, rows, centres)
        per_segment = rows // 5
        segments = [segment(f"d{s}", vectors[s * per_segment : (s + 1) * per_segment]) for s in range(5)]
        index = TenantIndex(TENANT, MODEL, dimensions, segments)
        assert index.rows == rows
        recalls = []
        for query in clustered(rng, 40, centres):
            exact = {divmod(int(row), per_segment) for row in np.argsort(-(vectors @ query))[:10]}
            found = {(int(hit.document_id[1:]), hit.chunk_index) for hit in index.vector_search(query, 10)}
            recalls.append(len(exact & found) / 10)
        assert np.mean(recalls) >= 0.9, recalls

    @pytest.mark.parametrize("dimensions", [128, 100])  # 100: the sign bits do not fill their last 64-bit word
    def test_a_stored_vector_finds_its_own_document_and_chunk_with_similarity_1(self, dimensions: int) -> None:
        rng = np.random.default_rng(6)
        vectors = random_unit(rng, 1_200, dimensions)
        index = TenantIndex(TENANT, MODEL, dimensions, [segment("da", vectors[:700]), segment("db", vectors[700:])])
        best = index.vector_search(vectors[987], 5)
        assert (best[0].document_id, best[0].chunk_index) == ("db", 287)
        assert best[0].similarity == pytest.approx(1.0, abs=0.01)
        assert [hit.similarity for hit in best] == sorted((hit.similarity for hit in best), reverse=True)

    def test_an_index_smaller_than_the_candidate_count_is_searched_whole(self) -> None:
        vectors = random_unit(np.random.default_rng(7), 3, 16)
        index = TenantIndex(TENANT, MODEL, 16, [segment("d1", vectors)])
        hits = index.vector_search(vectors[2], 10)
        assert len(hits) == 3
        assert (hits[0].chunk_index, round(hits[0].similarity, 2)) == (2, 1.0)

    def test_an_empty_index_finds_nothing(self) -> None:
        assert TenantIndex(TENANT, MODEL, 16).vector_search(np.ones(16, dtype=np.float32) / 4, 10) == []
        assert TenantIndex(TENANT, MODEL, 16).keyword_search("refund", 10) == []

    def test_a_query_of_other_dimensions_is_refused(self) -> None:
        index = TenantIndex(TENANT, MODEL, 16, [segment("d1", random_unit(np.random.default_rng(8), 3, 16))])
        with pytest.raises(ValueError, match="dimensions"):
            index.vector_search(np.ones(32, dtype=np.float32), 3)

    def test_a_segment_of_another_tenant_is_refused(self) -> None:
        theirs = segment("d1", random_unit(np.random.default_rng(9), 2, 16), tenant_id="t9999999999")
        with pytest.raises(ValueError, match="tenant"):
            TenantIndex(TENANT, MODEL, 16, [theirs])

    def test_a_segment_of_another_model_answers_keywords_but_never_vector_queries(self) -> None:
        # Its rows hold zeros: scoring them 0 is not enough, or they fill the k slots ahead of every row of
        # negative similarity; vector_search must leave them out.
        rng = np.random.default_rng(10)
        current = segment("new", random_unit(rng, 3, 16), ["alpha", "beta", "gamma"])
        stale = segment("old", random_unit(rng, 2, 16), ["refund policy", "delta"], model="old-model")
        index = TenantIndex(TENANT, MODEL, 16, [current, stale])
        assert index.skipped_vectors == ("old",)
        assert [(h.document_id, h.chunk_index) for h in index.keyword_search("refund", 5)] == [("old", 0)]
        for query in random_unit(rng, 5, 16):
            assert {hit.document_id for hit in index.vector_search(query, 10)} == {"new"}


class TestUpdates:
    def test_an_updated_index_keeps_the_documents_asked_for_and_adds_the_new_ones(self) -> None:
        rng = np.random.default_rng(11)
        a, b_old, b_new, c = (random_unit(rng, 3, 16) for _ in range(4))
        index = TenantIndex(
            TENANT,
            MODEL,
            16,
            [segment("da", a, ["alpha one", "alpha two", "alpha three"]), segment("db", b_old, ["beta old"] * 3)],
        )
        stale = Segment.build(
            tenant_id=TENANT,
            document_id="dc",
            generation="g2",
            model="old-model",
            chunk_indexes=[0, 1, 2],
            vectors=c,
            texts=["gamma refund", "gamma", "gamma"],
        )
        updated = index.updated(keep=["da"], added=[segment("db", b_new, ["beta new"] * 3), stale])
        assert updated.rows == 9 and updated.documents == {"da": "g1", "db": "g1", "dc": "g2"}
        assert updated.skipped_vectors == ("dc",)
        assert [(h.document_id, h.chunk_index) for h in updated.keyword_search("alpha two", 1)] == [("da", 1)]
        assert updated.keyword_search("old", 5) == []  # the replaced rows are gone, postings and all
        assert {h.document_id for h in updated.keyword_search("new", 5)} == {"db"}
        assert [(h.document_id, h.chunk_index) for h in updated.keyword_search("refund", 5)] == [("dc", 0)]
        for vectors, document_id in ((a, "da"), (b_new, "db")):
            best = updated.vector_search(vectors[1], 1)[0]
            assert (best.document_id, best.chunk_index) == (document_id, 1)
        assert index.rows == 6 and index.keyword_search("old", 5)  # the index it came from is unchanged

    def test_an_update_refuses_a_segment_of_another_tenant(self) -> None:
        index = TenantIndex(TENANT, MODEL, 16)
        theirs = segment("d1", random_unit(np.random.default_rng(12), 2, 16), tenant_id="t9999999999")
        with pytest.raises(ValueError, match="tenant"):
            index.updated(keep=[], added=[theirs])


class TestKeywordSearch:
    def test_the_chunk_with_the_rarer_matching_term_comes_first(self) -> None:
        texts = ["order status", "order history", "order total", "warranty claim"]
        hits = keyword_index(texts).keyword_search("order warranty", 4)
        assert hits[0].chunk_index == 3 and len(hits) == 4
        assert hits[0].keyword_score > hits[1].keyword_score > 0

    def test_a_chunk_holding_every_term_outranks_chunks_holding_one(self) -> None:
        index = keyword_index(
            ["Shipping is free for every order.", "A refund for the order.", "Refund forms are online."]
        )
        assert index.keyword_search("refund order", 3)[0].chunk_index == 1

    def test_coverage_is_1_when_all_terms_match_and_between_0_and_1_when_some_do(self) -> None:
        index = keyword_index(["Refunds take 14 days.", "Refunds need a receipt.", "Shipping is free."])
        full = {h.chunk_index: h.keyword_coverage for h in index.keyword_search("Do refunds take days?", 3)}
        assert full[0] == pytest.approx(1.0)
        assert 0 < full[1] < 1
        assert 2 not in full

    def test_a_question_term_no_chunk_uses_lowers_coverage_without_hiding_the_match(self) -> None:
        index = keyword_index(["Refunds take 14 days.", "Shipping is free."])
        (hit,) = index.keyword_search("refund zeppelin", 3)
        assert hit.chunk_index == 0 and 0 < hit.keyword_coverage < 1
        assert index.keyword_search("refund", 3)[0].keyword_coverage == pytest.approx(1.0)

    def test_no_matching_term_or_only_stopwords_find_nothing(self) -> None:
        index = keyword_index(["Refunds take 14 days.", "the of and what is it"])
        assert index.keyword_search("quantum chromodynamics", 5) == []
        assert index.keyword_search("what is the", 5) == []
        assert index.keyword_search("", 5) == []

    def test_k_limits_the_hits(self) -> None:
        index = keyword_index([f"refund case {i}" for i in range(10)])
        assert len(index.keyword_search("refund", 3)) == 3
        assert index.keyword_search("refund", 0) == []
