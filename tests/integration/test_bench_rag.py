"""Smoke tests of the RAG benchmarks: they run end to end at a small size and write their reports.

Figures are never asserted here, except what would mean the pipeline is broken.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import ingestion, quality


def test_the_ingestion_benchmark_ingests_a_pdf_and_counts_embedding_calls(tmp_path: Path) -> None:
    out = tmp_path / "ingestion.json"
    assert ingestion.main(["--pages", "20", "--embedders", "openai", "--out", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["openai"]
    assert result["chunks"] > 20 and result["embedding_calls"] >= 1
    assert result["embedding_calls_per_1000_chunks"] <= 2 * max(1, 1000 / result["chunks"])


def test_the_quality_evaluation_scores_every_question(tmp_path: Path) -> None:
    out = tmp_path / "rag_quality.json"
    assert quality.main(["--sets", "own", "--embedders", "keyword-only", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["results"]["own"]["keyword-only"]
    evaluation = quality.load_set("own")
    assert result["documents"] == len(evaluation.documents)
    assert result["questions"] == len(evaluation.questions) >= 35
    assert result["by_style"]["exact-id"]["hit_at_cited"] >= 0.5  # exact identifiers are what keywords find
    assert result["said_unknown_off_topic"] >= 0.6  # nothing relevant: "I don't know", not a made-up citation
    assert result["anchors"]["bm25"]["hit_at_cited"] >= 0.5 and "dense" not in result["anchors"]  # no vectors


def test_every_evaluation_set_is_well_formed() -> None:
    names = quality.available_sets()
    assert quality.HELD_OUT in names and len(names) >= 3
    for name in names:
        evaluation = quality.load_set(name)
        files = {path.name for path in evaluation.documents}
        assert len(files) >= 18, name
        ids = [q.id for q in evaluation.questions]
        assert len(ids) == len(set(ids)), name
        for question in evaluation.questions:
            assert set(question.expected) <= files, (name, question.id)
            assert bool(question.expected) != (question.style in (quality.UNANSWERABLE, quality.OFF_TOPIC))
            assert question.style != quality.NEEDS_ALL or len(question.expected) >= 2, (name, question.id)
            assert question.style != "follow-up" or question.history, (name, question.id)
