"""Packs and partitions (shared/packs.py): files of many documents, and an index that reads a few partitions."""

from __future__ import annotations

import numpy as np
import pytest

from shared.data.compaction import plan_compaction
from shared.data.vectors import Manifest, PackEntry, SegmentEntry
from shared.packs import PACK_ROWS, Codebook, Pack, PackPart, PackView, probe_count
from shared.vectors import Segment, TenantIndex
from tests.unit.test_vectors import MODEL, TENANT, clustered, segment, unit_rows

DIMENSIONS = 128


def corpus(documents: int = 40, rows: int = 50, seed: int = 0) -> tuple[list[Segment], np.ndarray, np.ndarray]:
    """Documents of clustered vectors (each document a few clusters), their vectors, and the cluster centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(60, DIMENSIONS))
    vectors = clustered(rng, documents * rows, centres)
    segments = [
        segment(f"d{n:03d}", vectors[n * rows : (n + 1) * rows], [f"doc{n} word{n % 7} row"] * rows)
        for n in range(documents)
    ]
    return segments, vectors, centres


def codebook_for(vectors: np.ndarray, partitions: int = 32) -> Codebook:
    return Codebook.train("b1", TENANT, vectors, partitions, len(vectors))


def view(pack: Pack, codebook: Codebook, served: dict[str, str] | None = None) -> PackView:
    return PackView.of(PackPart(pack, codebook), served if served is not None else dict(pack.documents))


def test_a_pack_survives_its_file_and_gives_back_each_documents_segment() -> None:
    segments, vectors, _ = corpus(documents=5, rows=20)
    pack = Pack.build(TENANT, "p1", MODEL, segments, codebook_for(vectors, 8))
    restored = Pack.from_bytes(pack.to_bytes())
    assert restored.documents == tuple((s.document_id, "g1") for s in segments) and restored.codebook_id == "b1"
    assert np.array_equal(restored.codes, pack.codes) and np.array_equal(restored.post_hashes, pack.post_hashes)
    assert (np.diff(restored.post_hashes.astype(np.int64)) >= 0).all()  # postings sorted by term
    # Rows are sorted by partition: each partition is one slice
    partitions = codebook_for(vectors, 8).assign(restored.codes)
    assert (np.diff(partitions) >= 0).all() and restored.partition_offsets[-1] == restored.rows
    # And each document comes back whole, its rows in chunk order, its terms the same
    back = {s.document_id: s for s in restored.segments()}
    for original in segments:
        again = back[original.document_id]
        assert np.array_equal(again.codes, original.codes) and np.array_equal(
            again.chunk_indexes, original.chunk_indexes
        )
        assert sorted(zip(again.term_hashes.tolist(), again.term_freqs.tolist(), strict=True)) == sorted(
            zip(original.term_hashes.tolist(), original.term_freqs.tolist(), strict=True)
        )
    assert [s.document_id for s in restored.segments({"d002": "g1", "d003": "other"})] == ["d002"]


def test_a_pack_refuses_rows_of_another_tenant_and_more_rows_than_it_can_number() -> None:
    segments, _, _ = corpus(documents=2, rows=5)
    with pytest.raises(ValueError, match="offered"):
        Pack.build("someone-else", "p1", MODEL, segments)
    big = segment("big", unit_rows(np.random.default_rng(1).normal(size=(PACK_ROWS + 1, 8))))
    with pytest.raises(ValueError, match="at most"):
        Pack.build(TENANT, "p1", MODEL, [big])


def test_partitioned_packs_find_what_the_flat_index_finds() -> None:
    segments, vectors, centres = corpus()
    codebook = codebook_for(vectors)
    packs = [Pack.build(TENANT, f"p{n}", MODEL, segments[n::2], codebook) for n in range(2)]
    partitioned = TenantIndex(TENANT, MODEL, DIMENSIONS, packs=[view(p, codebook) for p in packs])
    flat = TenantIndex(TENANT, MODEL, DIMENSIONS, segments)
    assert partitioned.rows == flat.rows == len(vectors) and partitioned.flat_documents == {}
    queries = clustered(np.random.default_rng(5), 50, centres)
    exact = np.argsort(-(vectors @ queries.T), axis=0)[:10].T
    found = 0
    for query, truth in zip(queries, exact, strict=True):
        hits = partitioned.vector_search(query, 10)
        found += len({int(h.document_id[1:]) * 50 + h.chunk_index for h in hits} & set(truth.tolist()))
    assert found / exact.size >= 0.9
    assert probe_count(32) == 8  # it read a quarter of the partitions
    # And keyword search gives the same scores (the texts repeat: which of the tied rows comes may differ)
    for question in ("doc7 row", "word3"):
        pair = [[round(h.keyword_score, 9) for h in i.keyword_search(question, 10)] for i in (partitioned, flat)]
        assert pair[0] == pair[1]


def test_rows_of_documents_a_version_does_not_serve_never_match() -> None:
    segments, vectors, _ = corpus(documents=6, rows=30)
    codebook = codebook_for(vectors, 8)
    pack = Pack.build(TENANT, "p1", MODEL, segments, codebook)
    served = {s.document_id: "g1" for s in segments if s.document_id != "d002"}
    index = TenantIndex(TENANT, MODEL, DIMENSIONS, packs=[view(pack, codebook, served)])
    assert "d002" not in index.documents and index.rows == 150 and index.held_rows == 180
    assert all(h.document_id != "d002" for h in index.vector_search(vectors[65], 20))  # a row of d002 itself
    assert all(h.document_id != "d002" for h in index.keyword_search("doc2 row", 50))
    assert index.keyword_search("doc2", 10) == []
    # A served document the pack does not hold at that generation is refused
    with pytest.raises(ValueError, match="does not hold"):
        view(pack, codebook, {"d001": "g2"})


def test_an_update_adds_flat_rows_beside_the_packs_and_never_copies_them() -> None:
    segments, vectors, _ = corpus(documents=4, rows=30)
    codebook = codebook_for(vectors, 8)
    pack_view = view(Pack.build(TENANT, "p1", MODEL, segments, codebook), codebook)
    index = TenantIndex(TENANT, MODEL, DIMENSIONS, packs=[pack_view])
    new = segment("fresh", unit_rows(np.random.default_rng(9).normal(size=(3, DIMENSIONS))), ["brand new"] * 3)
    updated = index.updated([], [new])
    assert updated.packs["p1"] is pack_view and updated.flat_documents == {"fresh": "g1"} and updated.rows == 123
    assert updated.vector_search(new.codes[1].astype(np.float32) / 127, 1)[0].document_id == "fresh"
    assert [h.document_id for h in updated.keyword_search("brand new", 5)] == ["fresh"] * 3
    with pytest.raises(ValueError, match="tenant"):
        TenantIndex("another", MODEL, DIMENSIONS, packs=[pack_view])


def test_a_codebook_survives_its_file_and_files_a_row_under_its_nearest_centroid() -> None:
    _, vectors, _ = corpus(documents=4, rows=50)
    codebook = codebook_for(vectors, 8)
    again = Codebook.from_bytes(codebook.to_bytes())
    assert (
        again.codebook_id == "b1" and again.trained_rows == 200 and np.array_equal(again.centroids, codebook.centroids)
    )
    codes = (vectors[:20] * 127 / np.abs(vectors[:20]).max(axis=1, keepdims=True)).astype(np.int8)
    expected = np.argmax(unit_rows(codes.astype(np.float32)) @ codebook.centroids.T, axis=1)
    assert np.array_equal(codebook.assign(codes), expected)


def entry(document: str, rows: int, pack: str | None = None, generation: str = "g1") -> SegmentEntry:
    return SegmentEntry(document, generation, f"vectors/t/{document}/{generation}.seg", rows, MODEL, pack)


def pack_entry(pack_id: str, rows: int, codebook: str = "", codebook_rows: int = 0) -> PackEntry:
    return PackEntry(pack_id, f"vectors/t/_packs/{pack_id}.pack", rows, 1, MODEL, codebook, codebook_rows, 1, "")


class TestPlanning:
    def test_too_few_loose_documents_wait_and_enough_are_grouped_into_packs_of_at_most_pack_rows(self) -> None:
        few = Manifest({f"d{n}": entry(f"d{n}", 10) for n in range(3)}, {})
        assert plan_compaction(few, MODEL, 4, 1_000_000).groups == []
        many = Manifest({f"d{n}": entry(f"d{n}", 30_000) for n in range(5)}, {})
        plan = plan_compaction(many, MODEL, 4, 1_000_000)
        assert [len(group) for group in plan.groups] == [2, 2, 1] and plan.partitions == 0

    def test_a_pack_holding_removed_rows_is_rewritten_and_a_full_clean_one_is_left_alone(self) -> None:
        documents = {"a": entry("a", 40_000, "p1"), "b": entry("b", 20_000, "p2")}
        manifest = Manifest(documents, {"p1": pack_entry("p1", 40_000), "p2": pack_entry("p2", 25_000)})
        plan = plan_compaction(manifest, MODEL, 32, 1_000_000)
        assert [[e.document_id for e, _ in group] for group in plan.groups] == [["b"]]

    def test_the_codebook_is_trained_when_the_tenant_passes_the_threshold_and_again_when_it_doubles(self) -> None:
        loose = {f"d{n}": entry(f"d{n}", 1_000) for n in range(40)}
        assert plan_compaction(Manifest(loose, {}), MODEL, 32, 30_000).retrain
        packed = {f"d{n}": entry(f"d{n}", 1_000, "p1") for n in range(40)}
        steady = Manifest({**packed, "x": entry("x", 100)}, {"p1": pack_entry("p1", 40_000, "b1", 40_000)})
        assert plan_compaction(steady, MODEL, 1, 30_000).codebook == "b1"
        grown = Manifest({**packed, **{f"x{n}": entry(f"x{n}", 1_000) for n in range(40)}}, steady.packs)
        assert plan_compaction(grown, MODEL, 32, 30_000).retrain
