"""The retrieval benchmark's machinery works end to end, and the index it measures finds the right chunks.

Nothing here is timed: the figures come from `make bench`. ChromaDB is not needed (CI does not install it).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import bench.retrieval as retrieval
from bench.retrieval import (
    CHUNKS_PER_DOCUMENT,
    exact_top_k,
    generate,
    recall_at_k,
    run_benchmark,
)

SIZE, DIMENSIONS, QUERIES = 2_000, 256, 20
OURS_FIELDS = {
    "p50_ms",
    "p99_ms",
    "cold_load_ms",
    "cold_load_ms_runs",
    "memory_mb",
    "memory_over_baseline_mb",
    "index_mb",
    "recall_at_10",
    "rows",
}
CHROMA_FIELDS = {"p50_ms", "p99_ms", "build_ms", "recall_at_10", "memory_mb", "rows"}


def test_a_tiny_run_without_chroma_writes_the_report_and_finds_the_exact_neighbours(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty results folder, and no ChromaDB (as in CI)
    monkeypatch.setattr(retrieval, "chroma_version", lambda: None)
    out = tmp_path / "results" / "retrieval.json"
    progress: list[str] = []

    # When the benchmark runs one tiny size
    returned = run_benchmark(
        sizes=[SIZE], dimensions=DIMENSIONS, queries=QUERIES, warmup=5, cold_runs=1, out=out, progress=progress.append
    )

    # Then the report on disk is the one returned, with every field
    report = json.loads(out.read_text())
    assert report == returned
    assert report["benchmark"] == "retrieval"
    assert set(report["machine"]) >= {"cpus", "python", "numpy", "chromadb"}
    assert (report["dimensions"], report["queries"], report["k"]) == (DIMENSIONS, QUERIES, 10)
    assert report["data"]["kind"] == "synthetic" and report["notes"] and report["date"]
    assert report["goals"]["at_chunks"] == 100_000 and report["goals_met"] is None  # no 100k run here
    result = report["results"][str(SIZE)]
    assert result["chunks"] == SIZE and result["documents"] == SIZE // CHUNKS_PER_DOCUMENT
    ours = result["ours"]
    assert set(ours) >= OURS_FIELDS
    assert ours["rows"] == SIZE
    assert ours["p50_ms"] > 0 and ours["p99_ms"] >= ours["p50_ms"] and ours["cold_load_ms"] > 0
    assert ours["memory_mb"] > report["baseline_process"]["memory_mb"] > 0 and ours["index_mb"] > 0
    # And the index found nearly all of the exact float32 top 10: a broken index fails here
    assert ours["recall_at_10"] > 0.9
    # And Chroma is said to be skipped, and why
    assert "not installed" in result["chroma"]["skipped"] and "not installed" in report["chroma"]["skipped"]
    assert result["speedup_vs_chroma"] is None
    assert set(result["goals_met"]) == {
        "p50_ms",
        "recall_at_10",
        "memory_mb",
        "faster_than_chroma",
        "twice_chroma_speed",
    }
    assert result["goals_met"]["faster_than_chroma"] is None and ours["layout"] == "segments"
    assert report["1m"]["goals_met"] is None and report["1m"]["goals"]["p50_ms"] == 25.0
    assert any("chroma SKIPPED" in line for line in progress)
    assert any("ours: 20 queries" in line for line in progress)  # the measuring process's lines come through


def test_a_size_past_the_partitioning_threshold_is_measured_compacted_and_flat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a threshold made small (50,000 rows in production), and no ChromaDB
    monkeypatch.setattr(retrieval, "chroma_version", lambda: None)
    monkeypatch.setattr(retrieval, "PARTITION_MIN_ROWS", 1_000)

    # When the benchmark runs a size past it
    report = run_benchmark(
        sizes=[SIZE],
        dimensions=DIMENSIONS,
        queries=QUERIES,
        warmup=5,
        processes=1,
        cold_runs=1,
        out=tmp_path / "r.json",
        progress=lambda _: None,
    )

    # Then ours is the compacted index of partitioned packs, the flat one is there to compare, both find the answers
    result = report["results"][str(SIZE)]
    assert result["ours"]["layout"] == "packs" and result["compaction"]["packs"] == 1
    assert result["ours"]["rows"] == SIZE and result["ours"]["recall_at_10"] > 0.9
    assert result["ours_flat"]["recall_at_10"] > 0.9


@pytest.mark.dynamodb_local
def test_a_large_size_is_published_compacted_and_loaded_cold_from_emulated_s3(tmp_path: Path) -> None:
    # Given sizes from 2,000 chunks on treated as large (500,000 in production): emulated S3 and DynamoDB Local
    report = run_benchmark(
        sizes=[3_000],
        dimensions=64,
        queries=QUERIES,
        warmup=5,
        processes=1,
        cold_runs=1,
        chroma=False,
        out=tmp_path / "r.json",
        progress=lambda _: None,
        large_from=2_000,
    )
    result = report["results"]["3000"]
    ours = result["ours"]
    # Then it was compacted into a pack by the store, loaded cold from S3, and found the exact neighbours
    assert result["compaction"]["packs"] == 1 and result["compaction"]["loose_documents_left"] == 0
    assert ours["rows"] == 3_000 and ours["recall_at_10"] > 0.9
    assert ours["cold_load_s3_ms"] > 0 and ours["cold_load_ms"] > 0 and ours["s3_transfer"]["bytes"] > 0
    assert set(result["goals_met"]) == {"p50_ms", "recall_at_10", "memory_mb", "cold_load_s3_ms"}


def test_the_data_are_unit_vectors_and_the_queries_are_fresh_draws() -> None:
    # Given a small corpus
    corpus = generate(1_000, 64, queries=50, warmup=5)

    # Then every vector and query has unit length, and no query is a stored vector
    assert np.allclose(np.linalg.norm(corpus.vectors, axis=1), 1, atol=1e-5)
    assert np.allclose(np.linalg.norm(corpus.queries, axis=1), 1, atol=1e-5)
    assert (corpus.vectors @ corpus.queries.T).max() < 0.99
    # And the chunks come in documents that cover every row once
    assert sum(rows for _, _, rows in corpus.documents) == 1_000 and len(corpus.texts) == 1_000
    # And the same seed draws the same data
    assert np.array_equal(generate(1_000, 64, queries=50, warmup=5).queries, corpus.queries)


def test_recall_counts_the_share_of_the_exact_neighbours_found() -> None:
    corpus = generate(500, 32, queries=4, warmup=0)
    exact = exact_top_k(corpus.vectors, corpus.queries)
    assert recall_at_k(exact.tolist(), exact) == 1.0
    half = [list(row[:5]) + [-1] * 5 for row in exact.tolist()]
    assert recall_at_k(half, exact) == 0.5
    # And the exact neighbours are in order, best first
    scores = np.take_along_axis(corpus.queries @ corpus.vectors.T, exact, axis=1)
    assert (np.diff(scores, axis=1) <= 0).all()


@pytest.mark.skipif(importlib.util.find_spec("chromadb") is None, reason="chromadb is not installed (bench only)")
def test_chroma_is_measured_on_the_same_vectors_when_installed(tmp_path: Path) -> None:
    report = run_benchmark(
        sizes=[SIZE],
        dimensions=DIMENSIONS,
        queries=QUERIES,
        warmup=5,
        cold_runs=1,
        out=tmp_path / "r.json",
        progress=lambda _: None,
    )
    result = report["results"][str(SIZE)]
    assert set(result["chroma"]) >= CHROMA_FIELDS
    assert result["chroma"]["rows"] == SIZE and result["chroma"]["recall_at_10"] > 0.9
    assert result["speedup_vs_chroma"] == round(result["chroma"]["p50_ms"] / result["ours"]["p50_ms"], 2)
