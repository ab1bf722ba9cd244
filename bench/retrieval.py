"""Vector retrieval of one tenant: our in-memory int8 index (shared/vectors.py) against ChromaDB, on the same vectors.

    python -m bench.retrieval [--sizes 10000,100000,1000000] [--queries 200] [--warmup 20] [--dimensions 1536]
                              [--processes 3] [--cold-runs 3] [--no-chroma] [--out bench/results/retrieval.json]

Data. Real OpenAI embeddings of 100k chunks cannot be had offline, so the vectors are synthetic, drawn with a
fixed seed to look like text embeddings. Each is normalize(m·mean + t·topic + s·subtopic + n·noise): `mean` is one
direction shared by every vector (real embeddings are anisotropic: two unrelated chunks have a cosine of ~0.1-0.2);
`topic` is one of 200 directions, `subtopic` one of 10 per topic, `noise` a fresh direction per vector; all are
random Gaussian directions with a per-dimension spread (log-normal), so some dimensions vary more than others. The
squared weights are m²=0.15, t²=0.25, s² uniform in [0.08, 0.32] per vector (some chunks are closer to their
subtopic than others) and n² the rest. Chunks come in documents of 100, one topic a document (topics drawn with
Zipf-like popularity, exponent 0.5), each chunk a subtopic of it; a document is one Segment, as ingestion writes
it. A query is a fresh draw of the same process (never a copy of a stored vector) about the subtopic of a stored
chunk picked at random: questions are about what the tenant's documents hold. Chunk texts are short synthetic
word lists (12 words), only so that Segment.build has keyword statistics to keep: real chunks of ~220 tokens have
many more distinct terms, and their keyword postings would add to load time and memory. The report's
`data_check` gives the cosines the generator produced, so a reader can judge the likeness.

Measured per size, each system in fresh processes of its own (`python -m bench.retrieval --child ...`), one
after the other, so that neither the other system nor this process's float32 ground truth counts in its memory:
- ours: the index as the chat function holds it for a tenant of that size. Below PARTITION_MIN_ROWS (50k) that
  is the flat index of one segment a document; from it on, the tenant is compacted (shared/packs.py: a codebook
  trained on a sample, rows filed by partition into packs of up to PACK_ROWS, as S3VectorStore.compact does) and
  the index holds the packs. The files (segments or packs) are read and decoded one at a time into a
  TenantIndex; then `warmup` unrecorded queries and `queries` timed ones (time.perf_counter around
  TenantIndex.vector_search(query, 10)); memory_mb is the process's peak RSS up to then (VmHWM). This runs in
  `processes` fresh processes, and the percentiles are over all their timed queries. Cold load is
  timed apart, `cold_runs` times, each in a fresh process: from every file's bytes already in memory (as if
  just fetched from S3) to a ready TenantIndex; the median is reported. A compacted size also reports
  `ours_flat`: the same rows as one flat index of segments (what it was before compaction), in one process.
- ours at LARGE_MIN_SIZE (500k) and more (the 1M tenant, bench/_retrieval_large.py): the vectors are drawn in
  blocks and never all held; the tenant is published to emulated AWS (moto's server for S3, in its own
  process, and DynamoDB Local) and compacted by S3VectorStore.compact (timed, for information). A fresh process
  then loads it cold with S3VectorStore.index (cold_load_s3_ms: the manifest query, every pack fetched in byte
  ranges, the index built) and answers the queries; memory_mb is its VmHWM. Apart, in fresh processes: the same
  bytes fetched from moto and nothing built (s3_transfer: what moto alone costs), and the index built from
  bytes already in memory (cold_load_ms, `cold_runs` times).
- chroma: an in-process EphemeralClient (telemetry off), one collection with cosine space and default HNSW
  settings, the same float32 vectors added in batches with their row numbers as ids (build_ms: every add, then
  one query, which waits for anything still unindexed); then the same warm-up and timed queries
  (collection.query(query_embeddings=..., n_results=10)); memory_mb is its process's peak RSS (the vectors are
  read from a file one batch at a time, so the whole float32 matrix is never in that process).
recall_at_10 is the share of the exact top 10 (float32 brute force, X @ q, in this process) that a system
returned, averaged over the timed queries. speedup_vs_chroma is Chroma's p50 over ours. numpy's BLAS runs with
its default threads unless OPENBLAS_NUM_THREADS (or OMP_NUM_THREADS) is set; the report records which.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench._report import write_report
from shared.packs import (
    PACK_ROWS,
    PARTITION_MIN_ROWS,
    TRAIN_ROWS_PER_PARTITION,
    Codebook,
    Pack,
    PackPart,
    PackView,
    partitions_for,
)
from shared.vectors import CANDIDATES_PER_RESULT, MIN_CANDIDATES, Segment, TenantIndex

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "retrieval.json"
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
# From this size on, a tenant is drawn in blocks and measured through emulated S3 (bench/_retrieval_large.py).
LARGE_MIN_SIZE = 500_000
DEFAULT_QUERIES = 200
DEFAULT_WARMUP = 20
DEFAULT_DIMENSIONS = 1536
DEFAULT_COLD_RUNS = 3
# Our queries are timed in this many fresh processes (their timings pooled): numpy's multithreaded BLAS makes
# one process's latency differ from another's (see ours.p50_ms_by_process). Chroma's build takes minutes: one.
DEFAULT_PROCESSES = 3
K = 10
SEED = 20260115
TENANT = "t-bench-retrieval"
MODEL = "text-embedding-3-small"
GENERATION = "g1"
CHUNKS_PER_DOCUMENT = 100
CHILD_TIMEOUT_SECONDS = 1_800
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CHROMA_BATCH = 5_000  # rows per add(); below Chroma's max batch size, which is checked as well

# The generator (see the module docstring).
TOPICS = 200
SUBTOPICS = 10
MEAN_WEIGHT2 = 0.15
TOPIC_WEIGHT2 = 0.25
SUBTOPIC_WEIGHT2 = (0.08, 0.32)
DIMENSION_SPREAD = 0.3  # sigma of the log-normal per-dimension scale
TOPIC_ZIPF = 0.5
TEXT_WORDS = 12
VOCABULARY = 5_000
GENERATION_BLOCK = 4_096
CHECK_PAIRS = 2_000

# Goals at GOAL_CHUNKS chunks.
GOAL_CHUNKS = 100_000
GOAL_P50_MS = 50.0
GOAL_RECALL = 0.95
GOAL_MEMORY_MB = 400.0
GOAL_SPEEDUP_VS_CHROMA = 2.0
# Goals at 1M chunks (issue 12): memory is 2 GB of 2**30 bytes; cold load is fetch and build from S3.
GOAL_1M_CHUNKS = 1_000_000
GOAL_1M_P50_MS = 25.0
GOAL_1M_RECALL = 0.95
GOAL_1M_MEMORY_MB = 2048.0
GOAL_1M_COLD_LOAD_MS = 3000.0

NOTES = (
    "Synthetic embeddings (see data): unit vectors with a shared mean direction, 200 topics x 10 subtopics and "
    "per-vector noise; a query is a fresh draw about the subtopic of a random stored chunk. Each system runs in "
    "fresh processes of its own, one after the other, on the same vectors and queries. ours: "
    "TenantIndex.vector_search (sign-bit Hamming prefilter keeping max(MIN_CANDIDATES, CANDIDATES_PER_RESULT*k) "
    "rows, exact int8 rescoring), one query at a time, after warm-up queries, in ours_query_processes fresh "
    "processes (percentiles over all their timed queries; p50_ms_by_process shows each); memory_mb is the "
    "highest peak RSS (VmHWM) of those processes, each of which read and decoded every segment file one at a "
    "time, built the TenantIndex and answered the queries; rss_after_load_mb is what one holds once built; "
    "index_mb is TenantIndex.nbytes (its own arrays: the decoded segments it keeps are not counted there, but "
    "are in the RSS); baseline_process is the same program loading nothing. cold_load_ms: every segment's "
    "bytes already in memory to a ready TenantIndex (Segment.from_bytes for each, then TenantIndex()), each run "
    "in a fresh process, median of the runs. chroma: in-process EphemeralClient, cosine space, default HNSW "
    "settings (see chroma.hnsw), embeddings passed directly (no embedding function), added in batches read from "
    "a file; build_ms is every add() plus a first query; its queries use collection.query with "
    "include=['distances'], one at a time, after the same warm-up, in one process (its build takes minutes); "
    "rss_before_add_mb is chromadb and its client before any vector. recall_at_10: share of the exact float32 "
    "top 10 (brute force) returned, mean over the timed queries. Percentiles by numpy (linear interpolation). "
    "numpy's BLAS uses its default threads unless machine.blas_threads_env says otherwise. Chunk texts are 12 "
    "synthetic words, so keyword postings are far smaller than with real ~220-token chunks: load time and "
    "memory leave that out. From PARTITION_MIN_ROWS (50k) on, ours is the tenant as compaction leaves it "
    "(partitioned packs, shared/packs.py; compaction made in memory with the store's parameters), and ours_flat "
    "the same rows as one flat index. At LARGE_MIN_SIZE (500k) and more (bench/_retrieval_large.py) the vectors "
    "are drawn in blocks, the tenant is published to moto's S3 server (its own process) and DynamoDB Local, "
    "compacted by S3VectorStore.compact, and loaded cold by S3VectorStore.index in fresh processes "
    "(cold_load_s3_ms: manifest, packs fetched, index built; memory_mb their VmHWM); s3_transfer is the same "
    "bytes fetched the same way with nothing built (what moto alone costs); cold_load_ms is the same load with "
    "every object and the manifest already in memory. Chroma is not measured there."
)


class RetrievalBenchFailed(RuntimeError):
    """A measuring process failed, or returned something the benchmark cannot use."""


# --- data -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    vectors: np.ndarray  # float32 (n, dimensions), unit rows
    texts: list[str]
    documents: list[tuple[str, int, int]]  # (document id, first row, rows)
    warmup: np.ndarray  # float32 (w, dimensions), unit rows
    queries: np.ndarray  # float32 (q, dimensions), unit rows

    @property
    def size(self) -> int:
        return len(self.vectors)


class _Generator:
    """Draws unit vectors near a shared mean, a topic and a subtopic (see the module docstring)."""

    def __init__(self, dimensions: int, seed: int) -> None:
        self.dimensions = dimensions
        self.rng = np.random.default_rng([seed, dimensions])
        spread = np.exp(self.rng.normal(0.0, DIMENSION_SPREAD, dimensions)).astype(np.float32)
        self.spread = spread / np.sqrt(np.mean(spread**2))
        self.mean = self.directions(1)[0]
        self.topics = self.directions(TOPICS)
        self.subtopics = self.directions(TOPICS * SUBTOPICS)
        popularity = 1.0 / np.arange(1, TOPICS + 1) ** TOPIC_ZIPF
        self.popularity = popularity / popularity.sum()

    def directions(self, n: int) -> np.ndarray:
        rows = self.rng.standard_normal((n, self.dimensions), dtype=np.float32) * self.spread
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def topics_drawn(self, n: int) -> np.ndarray:
        return self.rng.choice(TOPICS, size=n, p=self.popularity)

    def subtopics_of(self, topics: np.ndarray) -> np.ndarray:
        return topics * SUBTOPICS + self.rng.integers(0, SUBTOPICS, size=len(topics))

    def vectors(self, topics: np.ndarray, subtopics: np.ndarray) -> np.ndarray:
        out = np.empty((len(topics), self.dimensions), dtype=np.float32)
        for start in range(0, len(topics), GENERATION_BLOCK):
            end = min(start + GENERATION_BLOCK, len(topics))
            sub2 = self.rng.uniform(*SUBTOPIC_WEIGHT2, size=end - start).astype(np.float32)
            noise2 = 1.0 - MEAN_WEIGHT2 - TOPIC_WEIGHT2 - sub2
            block = (
                math.sqrt(MEAN_WEIGHT2) * self.mean
                + math.sqrt(TOPIC_WEIGHT2) * self.topics[topics[start:end]]
                + np.sqrt(sub2)[:, None] * self.subtopics[subtopics[start:end]]
                + np.sqrt(noise2)[:, None] * self.directions(end - start)
            )
            out[start:end] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    def texts(self, topics: np.ndarray, subtopics: np.ndarray) -> list[str]:
        """Cheap word lists: the chunk's topic and subtopic words, and common words (Zipf-like)."""
        ranks = np.minimum(self.rng.zipf(1.3, size=(len(topics), TEXT_WORDS - 2)), VOCABULARY) - 1
        return [
            f"topic{t} subtopic{s} " + " ".join(f"w{r}" for r in row)
            for t, s, row in zip(topics.tolist(), subtopics.tolist(), ranks.tolist(), strict=True)
        ]


def generate(size: int, dimensions: int, queries: int, warmup: int = DEFAULT_WARMUP, seed: int = SEED) -> Corpus:
    """`size` chunks in documents of CHUNKS_PER_DOCUMENT, and fresh queries, all drawn from `seed`."""
    if size < 1 or queries < 1 or warmup < 0 or dimensions < 8:
        raise ValueError("size and queries must be at least 1, warmup at least 0, dimensions at least 8")
    gen = _Generator(dimensions, seed)
    document_count = -(-size // CHUNKS_PER_DOCUMENT)
    chunk_topics = np.repeat(gen.topics_drawn(document_count), CHUNKS_PER_DOCUMENT)[:size]
    chunk_subtopics = gen.subtopics_of(chunk_topics)
    vectors = gen.vectors(chunk_topics, chunk_subtopics)
    texts = gen.texts(chunk_topics, chunk_subtopics)
    # A question is about something the tenant's documents hold: the subtopic of a stored chunk drawn at random.
    about = gen.rng.integers(0, size, warmup + queries)
    asked = gen.vectors(chunk_topics[about], chunk_subtopics[about])
    documents = [
        (f"doc-{n:06d}", start, min(CHUNKS_PER_DOCUMENT, size - start))
        for n, start in enumerate(range(0, size, CHUNKS_PER_DOCUMENT))
    ]
    return Corpus(vectors=vectors, texts=texts, documents=documents, warmup=asked[:warmup], queries=asked[warmup:])


def segment_bodies(corpus: Corpus) -> list[bytes]:
    """One stored segment a document, as ingestion writes them (Segment.to_bytes)."""
    bodies = []
    for document_id, start, rows in corpus.documents:
        segment = Segment.build(
            tenant_id=TENANT,
            document_id=document_id,
            generation=GENERATION,
            model=MODEL,
            chunk_indexes=range(rows),
            vectors=corpus.vectors[start : start + rows],
            texts=corpus.texts[start : start + rows],
        )
        bodies.append(segment.to_bytes())
    return bodies


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Row numbers of each query's k most similar vectors by float32 dot product (brute force), best first."""
    scores = vectors @ queries.T  # (n, q)
    k = min(k, len(vectors))
    top = np.argpartition(-scores, k - 1, axis=0)[:k].T  # (q, k), unordered
    order = np.argsort(-np.take_along_axis(scores.T, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: Sequence[Sequence[int]], exact: np.ndarray) -> float:
    """Mean over queries of the share of the exact top k that was found."""
    if len(found) != len(exact):
        raise RetrievalBenchFailed(f"{len(found)} answers for {len(exact)} queries")
    shares = [
        len(set(map(int, ids)) & set(truth.tolist())) / len(truth) for ids, truth in zip(found, exact, strict=True)
    ]
    return float(np.mean(shares))


def data_check(corpus: Corpus, exact: np.ndarray, seed: int = SEED) -> dict[str, float]:
    """Cosines the generator produced: random pairs of chunks, and each query to its exact neighbours."""
    rng = np.random.default_rng(seed + 1)
    left = rng.integers(0, corpus.size, CHECK_PAIRS)
    right = rng.integers(0, corpus.size, CHECK_PAIRS)
    keep = left != right
    pairs = np.einsum("ij,ij->i", corpus.vectors[left[keep]], corpus.vectors[right[keep]])
    neighbours = np.einsum("qkd,qd->qk", corpus.vectors[exact], corpus.queries)
    return {
        "random_pair_cosine_mean": round(float(pairs.mean()), 3),
        "random_pair_cosine_p5": round(float(np.percentile(pairs, 5)), 3),
        "random_pair_cosine_p95": round(float(np.percentile(pairs, 95)), 3),
        "query_top1_cosine_mean": round(float(neighbours[:, 0].mean()), 3),
        "query_top10_cosine_mean": round(float(neighbours[:, -1].mean()), 3),
        "query_top1_minus_top10_mean": round(float((neighbours[:, 0] - neighbours[:, -1]).mean()), 4),
    }


def data_description(dimensions: int, seed: int) -> dict[str, Any]:
    return {
        "kind": "synthetic",
        "generator": (
            "v = normalize(m*mean + t*topic + s*subtopic + n*noise); mean, topic, subtopic and noise are random "
            "Gaussian directions with a log-normal per-dimension scale; documents of chunks_per_document chunks "
            "share one topic, each chunk one of its subtopics; a query is a fresh draw (never a stored vector) "
            "about the subtopic of a stored chunk picked at random"
        ),
        "seed": seed,
        "dimensions": dimensions,
        "topics": TOPICS,
        "subtopics_per_topic": SUBTOPICS,
        "topic_popularity": f"Zipf-like, exponent {TOPIC_ZIPF}",
        "weights_squared": {
            "mean": MEAN_WEIGHT2,
            "topic": TOPIC_WEIGHT2,
            "subtopic": f"uniform {SUBTOPIC_WEIGHT2[0]}-{SUBTOPIC_WEIGHT2[1]} per vector",
            "noise": "the rest (1 - the others)",
        },
        "dimension_scale_sigma": DIMENSION_SPREAD,
        "chunks_per_document": CHUNKS_PER_DOCUMENT,
        "chunk_text": f"{TEXT_WORDS} synthetic words (topic, subtopic, common words), for keyword statistics only",
        "why_synthetic": "100k real 1536-d OpenAI embeddings cannot be fetched offline",
    }


# --- measuring processes ----------------------------------------------------------------------------------------


def _memory_mb() -> dict[str, float]:
    """This process's resident memory now and at its peak, in MB (MiB)."""
    status = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                status[name] = int(value.split()[0]) / 1024  # kB
    if "VmHWM" not in status:  # not Linux: ru_maxrss is the peak (KiB on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        status["VmHWM"] = peak / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return {"rss_mb": round(status.get("VmRSS", status["VmHWM"]), 1), "peak_rss_mb": round(status["VmHWM"], 1)}


def _latencies(search: Callable[[np.ndarray], list[int]], warmup: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    for query in warmup:
        search(query)
    seconds, found = [], []
    for query in queries:
        began = time.perf_counter()
        ids = search(query)
        seconds.append(time.perf_counter() - began)
        found.append(ids)
    return {**_percentiles([s * 1000 for s in seconds]), "ms": [s * 1000 for s in seconds], "found": found}


def _percentiles(ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(ms)
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 3),
        "p99_ms": round(float(np.percentile(values, 99)), 3),
        "mean_ms": round(float(values.mean()), 3),
        "max_ms": round(float(values.max()), 3),
    }


def _inputs(workdir: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    inputs = json.loads((workdir / "inputs.json").read_text())
    return inputs, np.load(workdir / "warmup.npy"), np.load(workdir / "queries.npy")


def _read_index_files(workdir: Path, inputs: dict[str, Any], layout: str) -> tuple[TenantIndex, int]:
    """The index from its files, each read and decoded in turn: segments streamed into a flat index, or packs
    (each kept as views of its bytes, as the loader keeps them); and how many files."""
    if layout == "packs":
        codebook = Codebook.from_bytes((workdir / "packs" / "codebook").read_bytes())
        paths = sorted((workdir / "packs").glob("*.pack"))
        views = []
        for path in paths:
            pack = Pack.from_bytes(path.read_bytes())
            views.append(PackView.of(PackPart(pack, codebook), dict(pack.documents)))
        return TenantIndex(TENANT, MODEL, inputs["dimensions"], packs=views), len(paths) + 1
    paths = sorted((workdir / "segments").iterdir())
    # One file at a time, copied into the index and dropped, as the chat function's loader streams them.
    segments = (Segment.from_bytes(path.read_bytes()) for path in paths)
    return TenantIndex(TENANT, MODEL, inputs["dimensions"], segments, rows=inputs["rows"]), len(paths)


def _measure_index(workdir: Path, layout: str, progress: Callable[[str], None]) -> dict[str, Any]:
    inputs, warmup, queries = _inputs(workdir)
    starts = inputs["document_starts"]
    before = _memory_mb()
    began = time.perf_counter()
    index, files = _read_index_files(workdir, inputs, layout)
    load_ms = (time.perf_counter() - began) * 1000
    loaded = _memory_mb()
    progress(
        f"    ours ({layout}): {index.rows} rows loaded from {files} files in {load_ms:.0f} ms; "
        f"RSS {loaded['rss_mb']:.0f} MB, peak {loaded['peak_rss_mb']:.0f} MB"
    )

    def search(query: np.ndarray) -> list[int]:
        return [starts[hit.document_id] + hit.chunk_index for hit in index.vector_search(query, K)]

    timed = _latencies(search, warmup, queries)
    served = _memory_mb()
    progress(f"    ours: {len(queries)} queries, p50 {timed['p50_ms']:.2f} ms, p99 {timed['p99_ms']:.2f} ms ({layout})")
    return {
        **timed,
        "layout": layout,
        "rows": index.rows,
        "index_mb": round(index.nbytes / 2**20, 1),
        "candidates": min(index.rows, max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * K)),
        "load_from_files_ms": round(load_ms, 1),
        "rss_before_load_mb": before["rss_mb"],
        "rss_after_load_mb": loaded["rss_mb"],
        "peak_rss_after_load_mb": loaded["peak_rss_mb"],
        "rss_after_queries_mb": served["rss_mb"],
        "memory_mb": served["peak_rss_mb"],
    }


def measure_ours(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Our index in this process, as the chat function holds a tenant of this size: load it, answer the queries."""
    return _measure_index(workdir, json.loads((workdir / "inputs.json").read_text())["layout"], progress)


def measure_ours_flat(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The same rows as one flat index of segments: the tenant before compaction."""
    return _measure_index(workdir, "segments", progress)


def measure_cold_load(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """One cold load in this fresh process: every file's bytes in memory (not timed) to a ready TenantIndex."""
    inputs = json.loads((workdir / "inputs.json").read_text())
    folder = workdir / ("packs" if inputs["layout"] == "packs" else "segments")
    bodies = {path.name: path.read_bytes() for path in sorted(folder.iterdir())}
    began = time.perf_counter()
    if inputs["layout"] == "packs":
        codebook = Codebook.from_bytes(bodies["codebook"])
        views = []
        for name, body in bodies.items():
            if name.endswith(".pack"):
                pack = Pack.from_bytes(body)
                views.append(PackView.of(PackPart(pack, codebook), dict(pack.documents)))
        index = TenantIndex(TENANT, MODEL, inputs["dimensions"], packs=views)
    else:
        segments = (Segment.from_bytes(body) for body in bodies.values())
        index = TenantIndex(TENANT, MODEL, inputs["dimensions"], segments, rows=inputs["rows"])
    cold_load_ms = (time.perf_counter() - began) * 1000
    progress(f"    ours: cold load (bytes in memory to a ready index of {index.rows} rows): {cold_load_ms:.0f} ms")
    return {"cold_load_ms": cold_load_ms, "segment_bytes": sum(len(body) for body in bodies.values())}


def measure_ours_s3(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """A cold chat process: S3VectorStore.index loads the tenant from emulated S3; then the queries."""
    from bench import _retrieval_large as large

    inputs, warmup, queries = _inputs(workdir)
    starts = inputs["document_starts"]
    store = large.store_for(inputs["endpoints"], MODEL, inputs["dimensions"])
    store.manifest_version(TENANT)  # the clients' connections made, as a warm container's are
    before = _memory_mb()
    began = time.perf_counter()
    index = store.index(TENANT)
    load_ms = (time.perf_counter() - began) * 1000
    loaded = _memory_mb()
    progress(
        f"    ours: {index.rows} rows loaded cold from S3 ({len(index.packs)} packs, {len(index.flat_documents)} "
        f"loose documents) in {load_ms:.0f} ms; RSS {loaded['rss_mb']:.0f} MB, peak {loaded['peak_rss_mb']:.0f} MB"
    )

    def search(query: np.ndarray) -> list[int]:
        return [starts[hit.document_id] + hit.chunk_index for hit in index.vector_search(query, K)]

    timed = _latencies(search, warmup, queries)
    keyword_ms = []
    for question in inputs["keyword_questions"]:
        keyword_began = time.perf_counter()
        index.keyword_search(question, 20)
        keyword_ms.append((time.perf_counter() - keyword_began) * 1000)
    served = _memory_mb()
    progress(f"    ours: {len(queries)} queries, p50 {timed['p50_ms']:.2f} ms, p99 {timed['p99_ms']:.2f} ms")
    return {
        **timed,
        "layout": "packs from S3",
        "rows": index.rows,
        "packs": len(index.packs),
        "flat_rows": index.rows - sum(view.rows for view in index.packs.values()),
        "index_mb": round(index.nbytes / 2**20, 1),
        "cold_load_s3_ms": round(load_ms, 1),
        "keyword_p50_ms": round(float(np.percentile(keyword_ms, 50)), 3),
        "keyword_p99_ms": round(float(np.percentile(keyword_ms, 99)), 3),
        "rss_before_load_mb": before["rss_mb"],
        "rss_after_load_mb": loaded["rss_mb"],
        "peak_rss_after_load_mb": loaded["peak_rss_mb"],
        "rss_after_queries_mb": served["rss_mb"],
        "memory_mb": served["peak_rss_mb"],
    }


def _pack_objects(inputs: dict[str, Any]) -> tuple[Any, Any, list[tuple[str, int | None]]]:
    from bench import _retrieval_large as large
    from shared.data.vectors import codebook_key

    store = large.store_for(inputs["endpoints"], MODEL, inputs["dimensions"])
    manifest = store.manifest(TENANT)
    codebooks = sorted({p.codebook for p in manifest.packs.values() if p.codebook})
    keys: list[tuple[str, int | None]] = [(codebook_key(TENANT, c), None) for c in codebooks]
    keys += [(pack.key, pack.bytes) for pack in manifest.packs.values()]
    return store, manifest, keys


def measure_s3_transfer(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The same objects fetched from emulated S3 the same way (byte ranges, 16 at once), nothing built: what
    the emulator alone costs. Then one pack in one plain GET: what one connection delivers."""
    inputs = json.loads((workdir / "inputs.json").read_text())
    store, manifest, keys = _pack_objects(inputs)
    began = time.perf_counter()
    bodies = store.read_objects(keys)
    ms = (time.perf_counter() - began) * 1000
    size = sum(len(body) for body in bodies.values())
    del bodies
    largest = max(manifest.packs.values(), key=lambda pack: pack.bytes)  # compacted: at least one
    began = time.perf_counter()
    one = len(store.read_object(largest.key))
    one_ms = (time.perf_counter() - began) * 1000
    progress(f"    moto alone: {size / 2**20:.0f} MB in {ms:.0f} ms ({size / 2**20 / ms * 1000:.0f} MB/s)")
    return {
        "ms": round(ms, 1),
        "bytes": size,
        "objects": len(keys),
        "mb_per_s": round(size / 2**20 / ms * 1000, 1),
        "one_connection_mb_per_s": round(one / 2**20 / one_ms * 1000, 1),
    }


def measure_cold_build(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """One cold load in this fresh process by S3VectorStore.index, with every object and the manifest already in
    memory (fetched once, not timed; bench/_retrieval_large.py's MemoryS3): our loader's own cost."""
    from bench import _retrieval_large as large
    from shared.data.vectors import _release_freed_memory

    inputs = json.loads((workdir / "inputs.json").read_text())
    new_store = large.memory_store(inputs["endpoints"], TENANT, MODEL, inputs["dimensions"])
    _release_freed_memory()
    store = new_store()
    began = time.perf_counter()
    index = store.index(TENANT)
    cold_load_ms = (time.perf_counter() - began) * 1000
    progress(f"    ours: cold load (bytes in memory to a ready index of {index.rows} rows): {cold_load_ms:.0f} ms")
    return {"cold_load_ms": cold_load_ms}


def compact_in_memory(segments: Sequence[Segment], dimensions: int, seed: int = SEED) -> tuple[Codebook, list[Pack]]:
    """What S3VectorStore.compact makes of a tenant's segments, without S3: a codebook trained on a random
    sample of TRAIN_ROWS_PER_PARTITION rows a partition, and packs of up to PACK_ROWS rows, documents in order."""
    rows = sum(s.rows for s in segments)
    partitions = partitions_for(rows)
    rng = np.random.default_rng(seed)
    codes = np.concatenate([s.codes for s in segments])
    sample = codes[np.sort(rng.choice(rows, min(rows, TRAIN_ROWS_PER_PARTITION * partitions), replace=False))]
    codebook = Codebook.train("b-bench", TENANT, sample.astype(np.float32), partitions, rows, seed)
    packs: list[Pack] = []
    group: list[Segment] = []
    held = 0
    for segment in segments:
        if group and held + segment.rows > PACK_ROWS:
            packs.append(Pack.build(TENANT, f"p{len(packs):04d}", MODEL, group, codebook))
            group, held = [], 0
        group.append(segment)
        held += segment.rows
    packs.append(Pack.build(TENANT, f"p{len(packs):04d}", MODEL, group, codebook))
    return codebook, packs


def chroma_version() -> str | None:
    """The installed chromadb's version, or None when it is not installed."""
    if importlib.util.find_spec("chromadb") is None:
        return None
    return importlib.metadata.version("chromadb")


def _vector_rows(workdir: Path, dimensions: int, start: int, end: int) -> np.ndarray:
    """Rows start..end of the float32 vectors file, read alone: the whole matrix never sits in Chroma's process."""
    count = (end - start) * dimensions
    rows = np.fromfile(workdir / "vectors.f32", dtype=np.float32, count=count, offset=start * dimensions * 4)
    return rows.reshape(end - start, dimensions)


def measure_chroma(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """ChromaDB in this process: build a cosine collection from the float32 vectors, then query it."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    inputs, warmup, queries = _inputs(workdir)
    rows, dimensions = inputs["rows"], inputs["dimensions"]
    client = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
    # Embeddings are always passed in: no embedding function, so Chroma never loads (or downloads) a model.
    collection = client.create_collection(
        f"bench-retrieval-{rows}", configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )
    before = _memory_mb()
    batch = min(CHROMA_BATCH, client.get_max_batch_size())
    began = time.perf_counter()
    for start in range(0, rows, batch):
        end = min(start + batch, rows)
        collection.add(
            ids=[str(row) for row in range(start, end)], embeddings=_vector_rows(workdir, dimensions, start, end)
        )
        if end == rows or (end // batch) % 4 == 0:
            progress(f"    chroma: added {end}/{rows} ({time.perf_counter() - began:.0f} s)")
    added = time.perf_counter()
    collection.query(query_embeddings=(warmup if len(warmup) else queries)[:1], n_results=K)
    build_ms = (time.perf_counter() - began) * 1000
    first_query_ms = (time.perf_counter() - added) * 1000
    built = _memory_mb()
    progress(
        f"    chroma: built in {build_ms / 1000:.1f} s (first query {first_query_ms:.0f} ms); "
        f"RSS {built['rss_mb']:.0f} MB, peak {built['peak_rss_mb']:.0f} MB"
    )

    def search(query: np.ndarray) -> list[int]:
        answer = collection.query(query_embeddings=query[None, :], n_results=K, include=["distances"])
        return [int(i) for i in answer["ids"][0]]

    timed = _latencies(search, warmup, queries)
    served = _memory_mb()
    progress(f"    chroma: {len(queries)} queries, p50 {timed['p50_ms']:.2f} ms, p99 {timed['p99_ms']:.2f} ms")
    configuration = collection.configuration or {}
    return {
        **timed,
        "build_ms": round(build_ms, 1),
        "first_query_ms": round(first_query_ms, 1),
        "rows": collection.count(),
        "add_batch": batch,
        "hnsw": dict(configuration.get("hnsw") or {}),
        "rss_before_add_mb": before["rss_mb"],
        "rss_after_build_mb": built["rss_mb"],
        "rss_after_queries_mb": served["rss_mb"],
        "memory_mb": served["peak_rss_mb"],
    }


def measure_baseline(workdir: Path, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The measuring program itself (python, numpy, shared.vectors) holding no index."""
    return {"memory_mb": _memory_mb()["peak_rss_mb"]}


CHILDREN: dict[str, Callable[[Path, Callable[[str], None]], dict[str, Any]]] = {
    "ours": measure_ours,
    "ours_flat": measure_ours_flat,
    "ours_s3": measure_ours_s3,
    "s3_transfer": measure_s3_transfer,
    "cold_build": measure_cold_build,
    "cold_load": measure_cold_load,
    "chroma": measure_chroma,
    "baseline": measure_baseline,
}


def run_child(system: str, workdir: Path, progress: Callable[[str], None]) -> dict[str, Any]:
    """`python -m bench.retrieval --child SYSTEM WORKDIR` in a fresh process; its progress lines pass through."""
    result_path = workdir / f"{system}.json"
    result_path.unlink(missing_ok=True)
    stderr_path = workdir / f"{system}.stderr"
    command = [sys.executable, "-m", "bench.retrieval", "--child", system, str(workdir)]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "ANONYMIZED_TELEMETRY": "False"}
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)
        assert process.stdout is not None
        watchdog = threading.Timer(CHILD_TIMEOUT_SECONDS, process.kill)
        watchdog.start()
        try:
            for line in process.stdout:
                progress(line.rstrip("\n"))
            code = process.wait()
        finally:
            watchdog.cancel()
    if code != 0 or not result_path.exists():
        tail = stderr_path.read_text(errors="replace")[-3000:]
        raise RetrievalBenchFailed(f"the {system} process failed (exit code {code}); stderr tail:\n{tail}")
    result: dict[str, Any] = json.loads(result_path.read_text())
    return result


def child_main(system: str, workdir: Path) -> int:
    def progress(line: str) -> None:
        print(line, flush=True)

    result = CHILDREN[system](workdir, progress)
    result["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    (workdir / f"{system}.json").write_text(json.dumps(result))
    return 0


# --- one size ---------------------------------------------------------------------------------------------------


def write_inputs(workdir: Path, corpus: Corpus, bodies: Sequence[bytes], with_vectors: bool) -> dict[str, Any]:
    """What the measuring processes read: segment files, queries, (for Chroma) the float32 vectors, and from
    PARTITION_MIN_ROWS on the packs compaction would make of the segments. Returns how the packs were made."""
    (workdir / "segments").mkdir(parents=True, exist_ok=True)
    for (document_id, _, _), body in zip(corpus.documents, bodies, strict=True):
        (workdir / "segments" / f"{document_id}.npz").write_bytes(body)
    np.save(workdir / "warmup.npy", corpus.warmup)
    np.save(workdir / "queries.npy", corpus.queries)
    if with_vectors:
        corpus.vectors.tofile(workdir / "vectors.f32")
    compaction: dict[str, Any] = {}
    if corpus.size >= PARTITION_MIN_ROWS:
        began = time.perf_counter()
        codebook, packs = compact_in_memory([Segment.from_bytes(body) for body in bodies], corpus.vectors.shape[1])
        (workdir / "packs").mkdir()
        (workdir / "packs" / "codebook").write_bytes(codebook.to_bytes())
        for pack in packs:
            (workdir / "packs" / f"{pack.pack_id}.pack").write_bytes(pack.to_bytes())
        compaction = {"seconds": round(time.perf_counter() - began, 1), "packs": len(packs)}
        compaction["partitions"] = codebook.partitions
    inputs = {
        "rows": corpus.size,
        "dimensions": int(corpus.vectors.shape[1]),
        "document_starts": {document_id: start for document_id, start, _ in corpus.documents},
        "layout": "packs" if compaction else "segments",
    }
    (workdir / "inputs.json").write_text(json.dumps(inputs))
    return compaction


def _summarize(runs: Sequence[dict[str, Any]], exact: np.ndarray) -> dict[str, Any]:
    """One system's figures over its query processes: percentiles of every timed query of all of them."""
    summary = {key: value for key, value in runs[0].items() if key not in ("found", "ms")}
    summary.update(_percentiles([ms for run in runs for ms in run["ms"]]))
    summary["recall_at_10"] = round(statistics.mean(recall_at_k(run["found"], exact) for run in runs), 4)
    summary["memory_mb"] = max(run["memory_mb"] for run in runs)
    if len(runs) > 1:
        summary["processes"] = len(runs)
        summary["p50_ms_by_process"] = [run["p50_ms"] for run in runs]
        summary["p99_ms_by_process"] = [run["p99_ms"] for run in runs]
    return summary


def measure_ours_size(
    size: int, workdir: Path, exact: np.ndarray, processes: int, cold_runs: int, progress: Callable[[str], None]
) -> dict[str, Any]:
    """Our index: the queries in `processes` fresh processes, then `cold_runs` cold loads, each in its own."""
    runs = []
    for n in range(1, processes + 1):
        progress(f"[retrieval] {size}: ours, fresh process {n}/{processes}")
        runs.append(run_child("ours", workdir, progress))
    ours = _summarize(runs, exact)
    cold = [run_child("cold_load", workdir, progress) for _ in range(cold_runs)]
    ours["cold_load_ms"] = round(statistics.median(run["cold_load_ms"] for run in cold), 1)
    ours["cold_load_ms_runs"] = [round(run["cold_load_ms"], 1) for run in cold]
    ours["segment_bytes_mb"] = round(cold[0]["segment_bytes"] / 2**20, 1)
    progress(
        f"[retrieval] {size}: ours p50 {ours['p50_ms']:.2f} ms over {processes} processes "
        f"{ours.get('p50_ms_by_process', '')}, recall@{K} {ours['recall_at_10']:.4f}"
    )
    return ours


def measure_size(
    size: int,
    dimensions: int,
    queries: int,
    warmup: int,
    processes: int,
    cold_runs: int,
    chroma_skipped: str | None,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """One tenant of `size` chunks: generate, write the segments, and measure ours (and Chroma unless skipped)."""
    began = time.perf_counter()
    corpus = generate(size, dimensions, queries, warmup)
    progress(
        f"[retrieval] {size}: generated {size} x {dimensions} vectors and {warmup}+{queries} queries "
        f"({time.perf_counter() - began:.1f} s)"
    )
    began = time.perf_counter()
    bodies = segment_bodies(corpus)
    progress(
        f"[retrieval] {size}: built {len(bodies)} segments, {sum(map(len, bodies)) / 2**20:.0f} MB "
        f"({time.perf_counter() - began:.1f} s)"
    )
    began = time.perf_counter()
    exact = exact_top_k(corpus.vectors, corpus.queries)
    check = data_check(corpus, exact)
    progress(
        f"[retrieval] {size}: exact float32 top {K} ({time.perf_counter() - began:.1f} s); random pairs' "
        f"cosine {check['random_pair_cosine_mean']}, query to top 1 {check['query_top1_cosine_mean']}"
    )
    result: dict[str, Any] = {"chunks": size, "documents": len(corpus.documents), "data_check": check}
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        workdir = Path(scratch)
        compaction = write_inputs(workdir, corpus, bodies, with_vectors=chroma_skipped is None)
        del bodies
        if compaction:
            result["compaction"] = compaction
            progress(f"[retrieval] {size}: compacted into {compaction['packs']} packs ({compaction['seconds']} s)")
        result["ours"] = measure_ours_size(size, workdir, exact, processes, cold_runs, progress)
        if compaction:
            progress(f"[retrieval] {size}: ours before compaction (flat segments), in a fresh process")
            flat = _summarize([run_child("ours_flat", workdir, progress)], exact)
            result["ours_flat"] = {
                key: flat[key] for key in ("p50_ms", "p99_ms", "recall_at_10", "memory_mb", "index_mb")
            }
        if chroma_skipped is None:
            progress(f"[retrieval] {size}: chroma, in a fresh process")
            result["chroma"] = _summarize([run_child("chroma", workdir, progress)], exact)
            progress(f"[retrieval] {size}: chroma recall@{K} {result['chroma']['recall_at_10']:.4f}")
        else:
            result["chroma"] = {"skipped": chroma_skipped}
            progress(f"[retrieval] {size}: chroma SKIPPED: {chroma_skipped}")
    chroma = result["chroma"]
    result["speedup_vs_chroma"] = round(chroma["p50_ms"] / result["ours"]["p50_ms"], 2) if "p50_ms" in chroma else None
    result["goals_met"] = goals_met(result)
    return result


def goals_met(result: dict[str, Any]) -> dict[str, bool | None]:
    ours, speedup = result["ours"], result["speedup_vs_chroma"]
    if "cold_load_s3_ms" in ours:
        return {
            "p50_ms": ours["p50_ms"] <= GOAL_1M_P50_MS,
            "recall_at_10": ours["recall_at_10"] >= GOAL_1M_RECALL,
            "memory_mb": ours["memory_mb"] <= GOAL_1M_MEMORY_MB,
            "cold_load_s3_ms": ours["cold_load_s3_ms"] <= GOAL_1M_COLD_LOAD_MS,
        }
    return {
        "p50_ms": ours["p50_ms"] <= GOAL_P50_MS,
        "recall_at_10": ours["recall_at_10"] >= GOAL_RECALL,
        "memory_mb": ours["memory_mb"] <= GOAL_MEMORY_MB,
        "faster_than_chroma": None if speedup is None else speedup > 1.0,
        "twice_chroma_speed": None if speedup is None else speedup >= GOAL_SPEEDUP_VS_CHROMA,
    }


def measure_large_size(
    size: int,
    dimensions: int,
    queries: int,
    warmup: int,
    processes: int,
    cold_runs: int,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """A tenant too large to draw at once (bench/_retrieval_large.py): published to emulated AWS, compacted by the
    store, loaded cold from S3 in fresh processes. Chroma is not measured at this size (its build would take
    over ten minutes and ~10 GB here)."""
    from bench import _retrieval_large as large

    result: dict[str, Any] = {"chunks": size, "documents": -(-size // CHUNKS_PER_DOCUMENT)}
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        workdir = Path(scratch)
        began = time.perf_counter()
        corpus = large.stream_corpus(
            _Generator(dimensions, SEED),
            SEED,
            size,
            queries,
            warmup,
            K,
            CHUNKS_PER_DOCUMENT,
            TENANT,
            MODEL,
            GENERATION,
            workdir,
            progress,
        )
        result["data_check"] = corpus.data_check
        progress(
            f"[retrieval] {size}: drew {size} x {dimensions} vectors in blocks, wrote {len(corpus.documents)} "
            f"segments ({corpus.segment_bytes / 2**20:.0f} MB), exact top {K} ({time.perf_counter() - began:.0f} s)"
        )
        np.save(workdir / "warmup.npy", corpus.warmup)
        np.save(workdir / "queries.npy", corpus.queries)
        with large.emulated_aws(workdir) as endpoints:
            began = time.perf_counter()
            large.seed_tenant(endpoints, corpus, workdir, TENANT, MODEL, GENERATION)
            progress(f"[retrieval] {size}: published to emulated AWS ({time.perf_counter() - began:.0f} s); compacting")
            result["compaction"] = large.compact(endpoints, TENANT, MODEL, dimensions)
            progress(f"[retrieval] {size}: compaction: {result['compaction']}")
            shutil.rmtree(workdir / "segments")  # in S3 now (and packed): the disk is not needed
            inputs = {
                "rows": size,
                "dimensions": dimensions,
                "document_starts": {document_id: start for document_id, start, _ in corpus.documents},
                "layout": "s3",
                "endpoints": endpoints,
                "keyword_questions": corpus.keyword_questions[:50],
            }
            (workdir / "inputs.json").write_text(json.dumps(inputs))
            runs = []
            for n in range(1, processes + 1):
                progress(f"[retrieval] {size}: ours, cold from S3, fresh process {n}/{processes}")
                runs.append(run_child("ours_s3", workdir, progress))
            ours = _summarize(runs, corpus.exact)
            ours["cold_load_s3_ms"] = round(statistics.median(run["cold_load_s3_ms"] for run in runs), 1)
            ours["cold_load_s3_ms_runs"] = [round(run["cold_load_s3_ms"], 1) for run in runs]
            transfer = run_child("s3_transfer", workdir, progress)
            ours["s3_transfer"] = {k: v for k, v in transfer.items() if k != "load_average_1m_at_end"}
            cold = [run_child("cold_build", workdir, progress) for _ in range(cold_runs)]
            ours["cold_load_ms"] = round(statistics.median(run["cold_load_ms"] for run in cold), 1)
            ours["cold_load_ms_runs"] = [round(run["cold_load_ms"], 1) for run in cold]
            ours["segment_bytes_mb"] = round(transfer["bytes"] / 2**20, 1)
    result["ours"] = ours
    result["chroma"] = {"skipped": f"not measured at {size} chunks (its HNSW build takes over ten minutes here)"}
    result["speedup_vs_chroma"] = None
    result["goals_met"] = goals_met(result)
    progress(
        f"[retrieval] {size}: ours p50 {ours['p50_ms']:.2f} ms, p99 {ours['p99_ms']:.2f} ms, recall@{K} "
        f"{ours['recall_at_10']:.4f}, memory {ours['memory_mb']:.0f} MB, cold load from S3 "
        f"{ours['cold_load_s3_ms']:.0f} ms (moto alone {transfer['ms']:.0f} ms; "
        f"from bytes {ours['cold_load_ms']:.0f} ms)"
    )
    return result


# --- the report -------------------------------------------------------------------------------------------------


def machine(chroma: str | None) -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "chromadb": chroma,
        # The machine may be shared: a high load average means noisy timings.
        "load_average_1m_at_start": round(os.getloadavg()[0], 2),
        # numpy's BLAS threads (shared/vectors.py rescores with a matrix-vector product): set or not.
        "blas_threads_env": {name: os.environ[name] for name in BLAS_THREAD_VARIABLES if name in os.environ},
    }


def chroma_skip_reason(requested: bool) -> str | None:
    """Why Chroma is not measured this run, or None when it is."""
    if not requested:
        return "not requested (--no-chroma)"
    if chroma_version() is None:
        return "chromadb is not installed: pip install -r requirements-bench.txt"
    return None


def run_benchmark(
    sizes: Sequence[int] = DEFAULT_SIZES,
    dimensions: int = DEFAULT_DIMENSIONS,
    queries: int = DEFAULT_QUERIES,
    warmup: int = DEFAULT_WARMUP,
    processes: int = DEFAULT_PROCESSES,
    cold_runs: int = DEFAULT_COLD_RUNS,
    chroma: bool = True,
    out: Path = RESULTS_FILE,
    progress: Callable[[str], None] = print,
    large_from: int = LARGE_MIN_SIZE,
) -> dict[str, Any]:
    """Measure every size; write and return the report. Raises RetrievalBenchFailed when a process fails."""
    if not sizes or min(sizes) < 1 or queries < 1 or warmup < 0 or processes < 1 or cold_runs < 1:
        raise ValueError("sizes, queries, processes and cold_runs must be at least 1, warmup at least 0")
    started = time.perf_counter()
    machine_info = machine(chroma_version())
    skipped = chroma_skip_reason(chroma)
    version = None if skipped else chroma_version()
    progress(
        f"[retrieval] sizes {list(sizes)} x {dimensions} dimensions, {queries} queries after {warmup} warm-up; "
        + (f"chromadb {version}" if version else f"chroma skipped: {skipped}")
    )
    with tempfile.TemporaryDirectory(prefix="bench-retrieval-") as scratch:
        baseline = run_child("baseline", Path(scratch), progress)
    progress(f"[retrieval] baseline process (python, numpy, shared.vectors, no index): {baseline['memory_mb']} MB")
    results = {
        str(size): (
            measure_large_size(size, dimensions, queries, warmup, min(processes, 2), cold_runs, progress)
            if size >= large_from
            else measure_size(size, dimensions, queries, warmup, processes, cold_runs, skipped, progress)
        )
        for size in sizes
    }
    for result in results.values():
        result["ours"]["memory_over_baseline_mb"] = round(result["ours"]["memory_mb"] - baseline["memory_mb"], 1)
    report: dict[str, Any] = {
        "benchmark": "retrieval",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": machine_info,
        "sizes": list(sizes),
        "dimensions": dimensions,
        "k": K,
        "queries": queries,
        "warmup_queries": warmup,
        "ours_query_processes": processes,
        "cold_runs": cold_runs,
        "data": data_description(dimensions, SEED),
        # shared/vectors.py changes often: which version of it these figures are for.
        "index_source_sha256": hashlib.sha256((REPO_ROOT / "shared" / "vectors.py").read_bytes()).hexdigest()[:16],
        "packs_source_sha256": hashlib.sha256((REPO_ROOT / "shared" / "packs.py").read_bytes()).hexdigest()[:16],
        "baseline_process": {"memory_mb": baseline["memory_mb"], "what": "python, numpy, shared.vectors; no index"},
        "chroma": {"version": version} if version else {"skipped": skipped},
        "results": results,
        "goals": {
            "at_chunks": GOAL_CHUNKS,
            "p50_ms": GOAL_P50_MS,
            "recall_at_10": GOAL_RECALL,
            "memory_mb": GOAL_MEMORY_MB,
            "faster_than_chroma": True,
            "speedup_vs_chroma": GOAL_SPEEDUP_VS_CHROMA,
        },
        "goals_met": results[str(GOAL_CHUNKS)]["goals_met"] if str(GOAL_CHUNKS) in results else None,
        "1m": one_million_section(results),
        "run_seconds": round(time.perf_counter() - started, 1),
        "notes": NOTES,
    }
    write_report(out, report)
    return report


def one_million_section(results: dict[str, Any]) -> dict[str, Any]:
    """The 1M-chunk tenant's figures against its goals (the full result is results["1000000"])."""
    goals = {
        "at_chunks": GOAL_1M_CHUNKS,
        "p50_ms": GOAL_1M_P50_MS,
        "recall_at_10": GOAL_1M_RECALL,
        "memory_mb": GOAL_1M_MEMORY_MB,
        "cold_load_s3_ms": GOAL_1M_COLD_LOAD_MS,
    }
    result = results.get(str(GOAL_1M_CHUNKS))
    if result is None:
        return {"goals": goals, "goals_met": None}
    ours = result["ours"]
    figures = {
        name: ours[name]
        for name in ("p50_ms", "p99_ms", "recall_at_10", "memory_mb", "index_mb", "cold_load_s3_ms", "cold_load_ms")
    }
    figures["s3_transfer_ms"] = ours["s3_transfer"]["ms"]
    figures["s3_transfer_mb_per_s"] = ours["s3_transfer"]["mb_per_s"]
    return {"goals": goals, "figures": figures, "goals_met": result["goals_met"], "compaction": result["compaction"]}


def summary_table(report: dict[str, Any]) -> str:
    header = (
        f"{'chunks':>8} {'system':<7} {'p50 ms':>8} {'p99 ms':>8} {'recall@10':>10} {'memory MB':>10} "
        f"{'index MB':>9} {'cold load ms':>13} {'build ms':>10}"
    )
    lines = [header, "-" * len(header)]
    for size, result in report["results"].items():
        ours, chroma = result["ours"], result["chroma"]
        lines.append(
            f"{size:>8} {'ours':<7} {ours['p50_ms']:>8.2f} {ours['p99_ms']:>8.2f} {ours['recall_at_10']:>10.4f} "
            f"{ours['memory_mb']:>10.0f} {ours['index_mb']:>9.0f} {ours['cold_load_ms']:>13.0f} {'':>10}"
        )
        if "skipped" in chroma:
            lines.append(f"{size:>8} {'chroma':<7} skipped: {chroma['skipped']}")
        else:
            lines.append(
                f"{size:>8} {'chroma':<7} {chroma['p50_ms']:>8.2f} {chroma['p99_ms']:>8.2f} "
                f"{chroma['recall_at_10']:>10.4f} {chroma['memory_mb']:>10.0f} {'':>9} {'':>13} "
                f"{chroma['build_ms']:>10.0f}"
            )
        if "ours_flat" in result:
            flat = result["ours_flat"]
            lines.append(
                f"{size:>8} {'flat':<7} {flat['p50_ms']:>8.2f} {flat['p99_ms']:>8.2f} {flat['recall_at_10']:>10.4f} "
                f"{flat['memory_mb']:>10.0f} {flat['index_mb']:>9.0f}   (the same rows before compaction)"
            )
        if "cold_load_s3_ms" in ours:
            transfer = ours["s3_transfer"]
            lines.append(
                f"{'':>8} cold load from S3 {ours['cold_load_s3_ms']:.0f} ms: moto alone moves the "
                f"{transfer['bytes'] / 2**20:.0f} MB in {transfer['ms']:.0f} ms ({transfer['mb_per_s']:.0f} MB/s); "
                f"building from bytes {ours['cold_load_ms']:.0f} ms"
            )
        if result["speedup_vs_chroma"] is not None:
            lines.append(f"{'':>8} ours is {result['speedup_vs_chroma']:.2f}x Chroma's p50")
    goals = report["goals"]
    lines.append(
        f"goals at {goals['at_chunks']} chunks: p50 <= {goals['p50_ms']} ms, recall@10 >= {goals['recall_at_10']}, "
        f"memory <= {goals['memory_mb']} MB, {goals['speedup_vs_chroma']}x Chroma; met: {report['goals_met']}"
    )
    million = report["1m"]
    if million.get("goals_met") is not None:
        g = million["goals"]
        lines.append(
            f"goals at {g['at_chunks']} chunks: p50 <= {g['p50_ms']} ms, recall@10 >= {g['recall_at_10']}, memory "
            f"<= {g['memory_mb']} MB, cold load from S3 <= {g['cold_load_s3_ms']} ms; met: {million['goals_met']}"
        )
    lines.append(f"baseline process (no index): {report['baseline_process']['memory_mb']} MB peak RSS")
    return "\n".join(lines)


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers, not {text!r}") from error
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", type=_sizes, default=list(DEFAULT_SIZES), help="chunks per run, comma-separated")
    parser.add_argument("--queries", type=int, default=DEFAULT_QUERIES, help="timed queries per size and system")
    parser.add_argument("--warmup", type=int, default=DEFAULT_WARMUP, help="unrecorded queries before timing")
    parser.add_argument("--dimensions", type=int, default=DEFAULT_DIMENSIONS)
    parser.add_argument(
        "--processes", type=int, default=DEFAULT_PROCESSES, help="fresh processes that time our queries"
    )
    parser.add_argument(
        "--cold-runs", type=int, default=DEFAULT_COLD_RUNS, help="cold loads timed, each in a fresh process"
    )
    parser.add_argument("--no-chroma", action="store_true", help="measure ours only")
    parser.add_argument(
        "--large-from", type=int, default=LARGE_MIN_SIZE, help="sizes from which the tenant is loaded from emulated S3"
    )
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="where the JSON report goes")
    parser.add_argument("--child", nargs=2, metavar=("SYSTEM", "WORKDIR"), help=argparse.SUPPRESS)  # internal
    args = parser.parse_args(argv)
    if args.child:
        system, workdir = args.child
        return child_main(system, Path(workdir))
    try:
        report = run_benchmark(
            sizes=args.sizes,
            dimensions=args.dimensions,
            queries=args.queries,
            warmup=args.warmup,
            processes=args.processes,
            cold_runs=args.cold_runs,
            chroma=not args.no_chroma,
            out=args.out,
            large_from=args.large_from,
        )
    except RetrievalBenchFailed as error:
        print(f"[retrieval] FAILED: {error}", file=sys.stderr)
        return 1
    print()
    print(summary_table(report))
    print(f"Run took {report['run_seconds']:.0f} s. Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
