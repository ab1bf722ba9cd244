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
    assert quality.main(["--embedders", "keyword-only", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    result = report["results"]["keyword-only"]
    assert result["documents"] == len(list((quality.QUALITY_DIR / "corpus").glob("*.md")))
    assert result["questions"] + result["unanswerable_questions"] == len(quality.load_questions()) >= 35
    assert result["by_style"]["exact-id"]["hit_at_5"] >= 0.5  # exact identifiers are what keywords find
    assert result["said_unknown"]["off-topic"] >= 0.6  # nothing relevant: "I don't know", not a made-up citation
