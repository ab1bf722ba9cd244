"""The vector index: int8-quantized vectors and keyword postings, searched in memory.

One document's vectors form a *segment*: written once by ingestion to S3 (see shared/data/vectors.py),
loaded by the chat function into a tenant's in-memory `TenantIndex`. Each segment row is one chunk and holds

- its embedding, quantized to int8 with one float32 scale per row (a quarter of float32's size), and
- its keyword statistics (hashed terms and their counts), so keyword search needs no text at query time.

A vector query runs in two steps (docs/decisions/0005-retrieval.md):
1. the Hamming distance between the query's sign bits and every row's sign bits (1 bit a dimension, stored
   word-major so that each 64-bit word of all rows is one contiguous array) picks a few hundred candidates;
2. those candidates are scored exactly on their int8 vectors, and the best k returned.
On 100k x 1536 this keeps ~174 MB in memory and answers in a few milliseconds (bench/retrieval.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shared.terms import terms

SEGMENT_FORMAT = 1
# Candidates the sign-bit pass keeps for exact int8 scoring, per result asked for (and at least the floor).
CANDIDATES_PER_RESULT = 30
MIN_CANDIDATES = 300
BM25_K1 = 1.5
BM25_B = 0.75


def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows to int8 codes and a per-row scale: row ≈ codes * scale."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peaks = np.abs(vectors).max(axis=1) if len(vectors) else np.zeros(0, dtype=np.float32)
    scales = np.where(peaks > 0, peaks / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(vectors / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def term_hash(term: str) -> int:
    """A stable 64-bit id for a keyword (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest(), "little")


def keyword_stats(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per text: its distinct hashed terms and their counts, flattened; plus term counts per text and lengths."""
    hashes: list[int] = []
    freqs: list[int] = []
    distinct: list[int] = []
    lengths: list[int] = []
    for text in texts:
        words = terms(text)
        counts = Counter(words)
        hashes.extend(term_hash(term) for term in counts)
        freqs.extend(min(count, 65_535) for count in counts.values())
        distinct.append(len(counts))
        lengths.append(len(words))
    return (
        np.array(hashes, dtype=np.uint64),
        np.array(freqs, dtype=np.uint16),
        np.array(distinct, dtype=np.int32),
        np.array(lengths, dtype=np.int32),
    )


@dataclass(frozen=True)
class Segment:
    """One document's rows: chunk numbers, quantized vectors and keyword statistics."""

    tenant_id: str
    document_id: str
    generation: str
    model: str
    chunk_indexes: np.ndarray  # int32 (n,)
    codes: np.ndarray  # int8 (n, dimensions)
    scales: np.ndarray  # float32 (n,)
    term_hashes: np.ndarray  # uint64 (terms,): each row's distinct terms, row after row
    term_freqs: np.ndarray  # uint16 (terms,)
    term_counts: np.ndarray  # int32 (n,): how many of term_hashes belong to each row
    lengths: np.ndarray  # int32 (n,): words in each row, for BM25's length normalisation

    @property
    def rows(self) -> int:
        return len(self.chunk_indexes)

    @property
    def dimensions(self) -> int:
        return int(self.codes.shape[1])

    @classmethod
    def build(
        cls,
        *,
        tenant_id: str,
        document_id: str,
        generation: str,
        model: str,
        chunk_indexes: Sequence[int],
        vectors: np.ndarray,
        texts: Sequence[str],
    ) -> Segment:
        if not (len(chunk_indexes) == len(vectors) == len(texts)):
            raise ValueError("a segment needs one vector and one text per chunk")
        codes, scales = quantize(vectors)
        hashes, freqs, counts, lengths = keyword_stats(texts)
        return cls(
            tenant_id=tenant_id,
            document_id=document_id,
            generation=generation,
            model=model,
            chunk_indexes=np.asarray(chunk_indexes, dtype=np.int32),
            codes=codes,
            scales=scales,
            term_hashes=hashes,
            term_freqs=freqs,
            term_counts=counts,
            lengths=lengths,
        )

    def to_bytes(self) -> bytes:
        meta = {
            "format": SEGMENT_FORMAT,
            "tenant_id": self.tenant_id,
            "document_id": self.document_id,
            "generation": self.generation,
            "model": self.model,
        }
        buffer = io.BytesIO()
        np.savez(
            buffer,
            meta=np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8),
            chunk_indexes=self.chunk_indexes,
            codes=self.codes,
            scales=self.scales,
            term_hashes=self.term_hashes,
            term_freqs=self.term_freqs,
            term_counts=self.term_counts,
            lengths=self.lengths,
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, body: bytes) -> Segment:
        with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
            meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
            if meta.get("format") != SEGMENT_FORMAT:
                raise ValueError(f"unknown segment format {meta.get('format')!r}")
            return cls(
                tenant_id=meta["tenant_id"],
                document_id=meta["document_id"],
                generation=meta["generation"],
                model=meta["model"],
                **{name: arrays[name] for name in _ARRAYS},
            )


_ARRAYS = ("chunk_indexes", "codes", "scales", "term_hashes", "term_freqs", "term_counts", "lengths")


@dataclass(frozen=True)
class Hit:
    """A row of the index that matched a query, with its scores (0 where a search did not find it)."""

    document_id: str
    chunk_index: int
    similarity: float = 0.0  # cosine similarity of the query and the chunk's vector
    keyword_score: float = 0.0  # BM25
    keyword_coverage: float = 0.0  # share of the query's keyword weight (idf) the chunk contains


@dataclass
class TenantIndex:
    """Every ready document of one tenant, searchable by vector and by keyword.

    Built from segments; segments whose model differs from `model` (embedded before the embedder changed)
    still answer keyword queries, and their vectors are left out.
    """

    tenant_id: str
    model: str
    dimensions: int
    segments: tuple[Segment, ...] = ()
    skipped_vectors: tuple[str, ...] = field(default=(), init=False)  # documents embedded with another model

    def __post_init__(self) -> None:
        for segment in self.segments:
            if segment.tenant_id != self.tenant_id:
                # Defence in depth: the loader only reads this tenant's keys, and the index checks again.
                raise ValueError(f"segment of tenant {segment.tenant_id} offered to tenant {self.tenant_id}")
        self._build_rows()
        self._build_vectors()
        self._build_postings()

    @property
    def rows(self) -> int:
        return len(self._chunk_indexes)

    @property
    def nbytes(self) -> int:
        arrays = (self._codes, self._scales, self._bits, self._post_hashes, self._post_freqs, self._post_rows)
        return sum(a.nbytes for a in arrays) + self._lengths.nbytes + self._chunk_indexes.nbytes

    def _build_rows(self) -> None:
        self._document_ids = [s.document_id for s in self.segments]
        self._row_segment = np.repeat(np.arange(len(self.segments), dtype=np.int32), [s.rows for s in self.segments])
        self._chunk_indexes = _concat([s.chunk_indexes for s in self.segments], np.int32)
        self._lengths = _concat([s.lengths for s in self.segments], np.int32)

    def _build_vectors(self) -> None:
        parts_codes, parts_scales, skipped = [], [], []
        for segment in self.segments:
            if segment.model == self.model and segment.dimensions == self.dimensions:
                parts_codes.append(segment.codes)
                parts_scales.append(segment.scales)
            else:  # kept as rows that no vector query can match: a scale of zero scores 0
                skipped.append(segment.document_id)
                parts_codes.append(np.zeros((segment.rows, self.dimensions), dtype=np.int8))
                parts_scales.append(np.zeros(segment.rows, dtype=np.float32))
        self.skipped_vectors = tuple(skipped)
        self._codes = np.concatenate(parts_codes) if parts_codes else np.zeros((0, self.dimensions), dtype=np.int8)
        self._scales = _concat(parts_scales, np.float32)
        # Sign bits, word-major: _bits[w] holds 64 dimensions of every row, so a Hamming pass is 1 array op per word.
        packed = np.packbits(self._codes > 0, axis=1)
        padding = (-packed.shape[1]) % 8
        if padding:
            packed = np.pad(packed, ((0, 0), (0, padding)))
        self._bits = np.ascontiguousarray(packed.view(np.uint64).T)

    def _build_postings(self) -> None:
        hashes = _concat([s.term_hashes for s in self.segments], np.uint64)
        freqs = _concat([s.term_freqs for s in self.segments], np.uint16)
        counts = _concat([s.term_counts for s in self.segments], np.int32)
        rows = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
        order = np.argsort(hashes, kind="stable")
        self._post_hashes = hashes[order]
        self._post_freqs = freqs[order]
        self._post_rows = rows[order]
        self._average_length = float(self._lengths.mean()) if len(self._lengths) else 1.0

    def _hit(self, row: int, **scores: float) -> Hit:
        document_id = self._document_ids[int(self._row_segment[row])]
        return Hit(document_id=document_id, chunk_index=int(self._chunk_indexes[row]), **scores)

    def vector_search(self, query: np.ndarray, k: int) -> list[Hit]:
        """The k rows most similar to `query` (a unit vector), best first."""
        if self.rows == 0 or k <= 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimensions:
            raise ValueError(f"query has {query.shape[0]} dimensions; the index has {self.dimensions}")
        candidates = self._candidates(query, max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * k))
        scores = (self._codes[candidates].astype(np.float32) @ query) * self._scales[candidates]
        best = np.argsort(-scores, kind="stable")[:k]
        return [self._hit(int(candidates[i]), similarity=float(scores[i])) for i in best]

    def _candidates(self, query: np.ndarray, count: int) -> np.ndarray:
        if count >= self.rows:
            return np.arange(self.rows)
        packed = np.packbits(query > 0)
        packed = np.pad(packed, (0, (-len(packed)) % 8)).view(np.uint64)
        distance = np.bitwise_count(self._bits[0] ^ packed[0]).astype(np.uint16)
        for word in range(1, len(packed)):
            distance += np.bitwise_count(self._bits[word] ^ packed[word])
        return np.argpartition(distance, count)[:count]

    def keyword_search(self, question: str, k: int) -> list[Hit]:
        """The k rows with the best BM25 score for the question's terms, best first; none without a match."""
        query_terms = set(terms(question))
        if self.rows == 0 or not query_terms or k <= 0:
            return []
        scores = np.zeros(self.rows, dtype=np.float64)
        covered = np.zeros(self.rows, dtype=np.float64)
        total_weight = 0.0
        for term in query_terms:
            wanted = np.uint64(term_hash(term))
            low = int(np.searchsorted(self._post_hashes, wanted, side="left"))
            high = int(np.searchsorted(self._post_hashes, wanted, side="right"))
            frequency = high - low
            idf = math.log(1 + (self.rows - frequency + 0.5) / (frequency + 0.5))
            if not frequency:
                # A word no document uses is as often the question's phrasing as a missing topic: half weight.
                total_weight += idf / 2
                continue
            total_weight += idf
            rows = self._post_rows[low:high]
            tf = self._post_freqs[low:high].astype(np.float64)
            norm = BM25_K1 * (1 - BM25_B + BM25_B * self._lengths[rows] / self._average_length)
            scores[rows] += idf * tf * (BM25_K1 + 1) / (tf + norm)
            covered[rows] += idf
        matched = np.flatnonzero(scores)
        if not len(matched):
            return []
        best = matched[np.argsort(-scores[matched], kind="stable")[:k]]
        return [
            self._hit(int(row), keyword_score=float(scores[row]), keyword_coverage=float(covered[row] / total_weight))
            for row in best
        ]


def _concat(parts: Iterable[np.ndarray], dtype: Any) -> np.ndarray:
    parts = list(parts)
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)
