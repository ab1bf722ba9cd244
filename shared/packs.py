"""Packs and partitions: how a tenant of a million chunks loads from a few files and answers in milliseconds.

A tenant that uploads documents one at a time gets one segment a document (shared/vectors.py). Compaction
(S3VectorStore.compact, shared/data/vectors.py) merges them into *packs*: files of up to PACK_ROWS rows of many
documents, with the same int8 vectors, plus what the index would otherwise compute at every load (the sign bits,
and the keyword postings sorted by term). A pack is read zero-copy: the index keeps views of the fetched bytes.

Partitions (IVF). Once a tenant holds PARTITION_MIN_ROWS rows, compaction trains a *codebook*: about √rows
centroids (`partitions_for`), found by spherical k-means on a sample of the tenant's vectors. Every row of a pack
is filed under its nearest centroid, and a pack's rows are sorted by partition, so that a partition is one slice
of it. A query then
1. scores the centroids and keeps the `probe_count` best partitions (3% of them at 1M rows);
2. computes the Hamming distance of its sign bits to the sign bits of those partitions' rows, in every pack, and
   keeps the closest (at least the flat index's candidate count, and a 25th of the rows read);
3. scores those exactly on their int8 vectors, as the flat index does.
Tenants below PARTITION_MIN_ROWS keep the flat index (TenantIndex's own arrays): at that size reading every row's
first sign bits is as fast, and needs no training.

A pack says which documents (and generations) it holds; the manifest says which pack serves each document. Rows of
documents removed or uploaded again since the pack was written stay in it until the next compaction, but a
`PackView` (the pack with the rows this manifest version serves) leaves them out of every search.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.vectors import Buffer, Hit, Segment, decode_arrays, encode_arrays, sign_bits

PACK_FORMAT = 3
CODEBOOK_FORMAT = 1
# Most rows a pack holds: its postings number rows with 16 bits. At 1,536 dimensions a full pack is ~110 MB.
PACK_ROWS = 65_536
# Tenants with at least this many rows are partitioned when compacted (below, the flat index is as fast).
PARTITION_MIN_ROWS = 50_000
# k-means: sample rows per centroid, and rounds (bench/retrieval.py: recall@10 did not move past 6 rounds).
TRAIN_ROWS_PER_PARTITION = 40
TRAIN_ROUNDS = 8
ASSIGN_BLOCK = 8_192
# Partitions a query reads: a 32nd of them, and at least PROBE_MIN (8 of 256 at 100k rows, 32 of 1,024 at 1M).
PROBE_SHARE = 32
PROBE_MIN = 8
# Rows read per candidate kept for exact scoring (besides the flat index's floor of candidates per result).
ROWS_READ_PER_CANDIDATE = 25

_PACK_MAGIC = b"DCPACK\n"
_CODEBOOK_MAGIC = b"DCBOOK\n"
_PACK_ARRAYS = (
    "row_documents",
    "chunk_indexes",
    "codes",
    "scales",
    "bits",
    "lengths",
    "post_hashes",
    "post_rows",
    "post_freqs",
    "partition_offsets",
)


def partitions_for(rows: int) -> int:
    """About √rows partitions, a power of two: 256 at 100k rows, 1,024 at 1M."""
    return int(min(4_096, max(16, 2 ** round(math.log2(math.sqrt(max(rows, 1)))))))


def probe_count(partitions: int) -> int:
    return min(partitions, max(PROBE_MIN, partitions // PROBE_SHARE))


@dataclass(frozen=True)
class Codebook:
    """A tenant's partition centroids: unit vectors; a row belongs to the one it is most similar to."""

    codebook_id: str
    tenant_id: str
    centroids: np.ndarray  # float32 (partitions, dimensions)
    trained_rows: int  # the tenant's rows when it was trained: compaction trains again once they have doubled

    @property
    def partitions(self) -> int:
        return int(self.centroids.shape[0])

    def assign(self, codes: np.ndarray) -> np.ndarray:
        """Each row's partition (int32). A row's scale does not change which centroid is nearest."""
        out = np.zeros(len(codes), dtype=np.int32)
        for start in range(0, len(codes), ASSIGN_BLOCK):
            block = codes[start : start + ASSIGN_BLOCK].astype(np.float32)
            out[start : start + len(block)] = np.argmax(block @ self.centroids.T, axis=1)
        return out

    @classmethod
    def train(
        cls, codebook_id: str, tenant_id: str, sample: np.ndarray, partitions: int, trained_rows: int, seed: int = 0
    ) -> Codebook:
        """Spherical k-means on `sample` (float32 rows of any length; zero rows are left out)."""
        rng = np.random.default_rng(seed)
        norms = np.linalg.norm(sample, axis=1)
        rows = (sample[norms > 0] / norms[norms > 0, None]).astype(np.float32)
        if len(rows) < partitions:
            raise ValueError(f"{len(rows)} sample rows cannot train {partitions} partitions")
        centroids = rows[rng.choice(len(rows), partitions, replace=False)].copy()
        for _ in range(TRAIN_ROUNDS):
            nearest = np.argmax(rows @ centroids.T, axis=1)
            sums = np.zeros_like(centroids)
            np.add.at(sums, nearest, rows)
            empty = np.bincount(nearest, minlength=partitions) == 0
            sums[empty] = rows[rng.choice(len(rows), int(empty.sum()), replace=False)]  # reseeded at random
            centroids = sums / np.linalg.norm(sums, axis=1, keepdims=True)
        return cls(codebook_id, tenant_id, centroids.astype(np.float32), trained_rows)

    def to_bytes(self) -> bytes:
        header = {
            "format": CODEBOOK_FORMAT,
            "codebook_id": self.codebook_id,
            "tenant_id": self.tenant_id,
            "trained_rows": self.trained_rows,
        }
        return encode_arrays(_CODEBOOK_MAGIC, header, [("centroids", self.centroids)])

    @classmethod
    def from_bytes(cls, body: Buffer) -> Codebook:
        header, arrays = decode_arrays(_CODEBOOK_MAGIC, body, "codebook")
        if header.get("format") != CODEBOOK_FORMAT:
            raise ValueError(f"unknown codebook format {header.get('format')!r}")
        return cls(header["codebook_id"], header["tenant_id"], arrays["centroids"], int(header["trained_rows"]))


@dataclass(frozen=True)
class Pack:
    """Rows of many documents of one tenant and one model, sorted by (partition, document, chunk)."""

    tenant_id: str
    pack_id: str
    model: str
    codebook_id: str  # "" when the rows are not partitioned
    documents: tuple[tuple[str, str], ...]  # (document id, generation) of every document it holds
    row_documents: np.ndarray  # int32 (n,): each row's index into documents
    chunk_indexes: np.ndarray  # int32 (n,)
    codes: np.ndarray  # int8 (n, dimensions)
    scales: np.ndarray  # float32 (n,)
    bits: np.ndarray  # uint64 (n, words): sign bits (shared.vectors.sign_bits)
    lengths: np.ndarray  # int32 (n,): words in each row
    post_hashes: np.ndarray  # uint32 (postings,): sorted
    post_rows: np.ndarray  # uint16 (postings,)
    post_freqs: np.ndarray  # uint16 (postings,)
    partition_offsets: np.ndarray  # int64 (partitions + 1,): partition p is rows o[p]..o[p+1]; empty if none

    @property
    def rows(self) -> int:
        return len(self.chunk_indexes)

    @property
    def dimensions(self) -> int:
        return int(self.codes.shape[1])

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _PACK_ARRAYS)

    @classmethod
    def build(
        cls, tenant_id: str, pack_id: str, model: str, segments: Sequence[Segment], codebook: Codebook | None = None
    ) -> Pack:
        """The segments' rows in one pack (each segment one document), partitioned by `codebook` if given."""
        if not segments:
            raise ValueError("a pack needs at least one segment")
        rows = sum(s.rows for s in segments)
        if rows > PACK_ROWS:
            raise ValueError(f"a pack holds at most {PACK_ROWS} rows, not {rows}")
        for segment in segments:
            if segment.tenant_id != tenant_id or segment.model != model:
                raise ValueError(f"segment of {segment.tenant_id}/{segment.model} offered to a pack of {tenant_id}")
        codes = np.concatenate([s.codes for s in segments])
        row_documents = np.repeat(np.arange(len(segments), dtype=np.int32), [s.rows for s in segments])
        chunk_indexes = np.concatenate([s.chunk_indexes for s in segments]).astype(np.int32)
        partitions = codebook.assign(codes) if codebook is not None else np.zeros(rows, dtype=np.int32)
        order = np.lexsort((chunk_indexes, row_documents, partitions))
        new_row = np.empty(rows, dtype=np.int64)
        new_row[order] = np.arange(rows)
        # Keyword postings: (term, row) for each distinct term of each row, sorted by term, then row.
        term_counts = np.concatenate([s.term_counts for s in segments])
        hashes = np.concatenate([s.term_hashes for s in segments]).astype(np.uint32)
        post_rows = new_row[np.repeat(np.arange(rows), term_counts)]
        by_term = np.lexsort((post_rows, hashes))
        offsets: np.ndarray = np.zeros(0, dtype=np.int64)
        if codebook is not None:
            offsets = np.concatenate([[0], np.cumsum(np.bincount(partitions, minlength=codebook.partitions))])
        codes = codes[order]
        return cls(
            tenant_id=tenant_id,
            pack_id=pack_id,
            model=model,
            codebook_id=codebook.codebook_id if codebook is not None else "",
            documents=tuple((s.document_id, s.generation) for s in segments),
            row_documents=row_documents[order],
            chunk_indexes=chunk_indexes[order],
            codes=codes,
            scales=np.concatenate([s.scales for s in segments])[order].astype(np.float32),
            bits=sign_bits(codes),
            lengths=np.concatenate([s.lengths for s in segments])[order].astype(np.int32),
            post_hashes=hashes[by_term],
            post_rows=post_rows[by_term].astype(np.uint16),
            post_freqs=np.concatenate([s.term_freqs for s in segments]).astype(np.uint16)[by_term],
            partition_offsets=offsets.astype(np.int64),
        )

    def segments(self, wanted: Mapping[str, str] | None = None) -> Iterator[Segment]:
        """The documents it holds as segments (rows in chunk order): all, or those `wanted` (id -> generation)."""
        by_document = np.argsort(self.row_documents, kind="stable")
        ends = np.cumsum(np.bincount(self.row_documents, minlength=len(self.documents)))
        # Postings back to rows: each row's terms are one slice of the postings ordered by row.
        by_row = np.argsort(self.post_rows, kind="stable")
        row_terms = np.bincount(self.post_rows, minlength=self.rows)
        row_first = np.cumsum(row_terms) - row_terms
        for number, (document_id, generation) in enumerate(self.documents):
            if wanted is not None and wanted.get(document_id) != generation:
                continue
            rows = by_document[(ends[number - 1] if number else 0) : ends[number]]
            rows = rows[np.argsort(self.chunk_indexes[rows], kind="stable")]
            counts = row_terms[rows]
            positions = by_row[_ranges(row_first[rows], counts)]
            yield Segment(
                tenant_id=self.tenant_id,
                document_id=document_id,
                generation=generation,
                model=self.model,
                chunk_indexes=self.chunk_indexes[rows],
                codes=self.codes[rows],
                scales=self.scales[rows],
                term_hashes=self.post_hashes[positions],
                term_freqs=self.post_freqs[positions],
                term_counts=counts.astype(np.int32),
                lengths=self.lengths[rows],
            )

    def to_bytes(self) -> bytes:
        header: dict[str, Any] = {
            "format": PACK_FORMAT,
            "tenant_id": self.tenant_id,
            "pack_id": self.pack_id,
            "model": self.model,
            "codebook_id": self.codebook_id,
            "documents": [list(document) for document in self.documents],
        }
        return encode_arrays(_PACK_MAGIC, header, [(name, getattr(self, name)) for name in _PACK_ARRAYS])

    @classmethod
    def from_bytes(cls, body: Buffer) -> Pack:
        """A pack whose arrays are views of `body`: nothing is copied."""
        header, arrays = decode_arrays(_PACK_MAGIC, body, "vector pack")
        if header.get("format") != PACK_FORMAT:
            raise ValueError(f"unknown pack format {header.get('format')!r}")
        return cls(
            tenant_id=header["tenant_id"],
            pack_id=header["pack_id"],
            model=header["model"],
            codebook_id=header["codebook_id"],
            documents=tuple((document, generation) for document, generation in header["documents"]),
            **{name: arrays[name] for name in _PACK_ARRAYS},
        )


class PackPart:
    """A partitioned pack as an index holds it: the pack (views of its file) and the codebook it was filed by.

    Immutable, so one part serves every version of a tenant's index that holds the pack."""

    def __init__(self, pack: Pack, codebook: Codebook) -> None:
        if pack.codebook_id != codebook.codebook_id or len(pack.partition_offsets) != codebook.partitions + 1:
            raise ValueError(f"pack {pack.pack_id} was not partitioned by codebook {codebook.codebook_id}")
        if pack.tenant_id != codebook.tenant_id:
            raise ValueError(f"pack of tenant {pack.tenant_id} with a codebook of tenant {codebook.tenant_id}")
        self.pack = pack
        self.codebook = codebook
        self.length_sum = float(pack.lengths.sum())
        self._numbers = {document: number for number, (document, _) in enumerate(pack.documents)}

    def rows_of(self, partitions: np.ndarray) -> np.ndarray:
        """Row numbers of the given partitions' rows."""
        offsets = self.pack.partition_offsets
        return _ranges(offsets[partitions], offsets[partitions + 1] - offsets[partitions])

    def live_rows(self, served: Mapping[str, str]) -> np.ndarray | None:
        """Which rows belong to the documents `served` (id -> generation); None when all do."""
        numbers = []
        for document_id, generation in served.items():
            number = self._numbers.get(document_id)
            if number is None or self.pack.documents[number][1] != generation:
                raise ValueError(f"pack {self.pack.pack_id} does not hold document {document_id} at {generation}")
            numbers.append(number)
        if len(numbers) == len(self.pack.documents):
            return None
        return np.isin(self.pack.row_documents, np.array(numbers, dtype=np.int32))

    def hit(self, row: int, similarity: float = 0.0, keyword_score: float = 0.0, coverage: float = 0.0) -> Hit:
        document_id = self.pack.documents[int(self.pack.row_documents[row])][0]
        return Hit(document_id, int(self.pack.chunk_indexes[row]), similarity, keyword_score, coverage)


@dataclass(frozen=True)
class PackView:
    """A part with the documents one manifest version serves from it: the other rows never match."""

    part: PackPart
    served: Mapping[str, str]  # document id -> generation
    live: np.ndarray | None  # bool (rows,); None: every row is served

    @classmethod
    def of(cls, part: PackPart, served: Mapping[str, str]) -> PackView:
        return cls(part, dict(served), part.live_rows(served))

    @property
    def rows(self) -> int:
        return self.part.pack.rows if self.live is None else int(self.live.sum())


def search_packs(
    views: Sequence[PackView], query: np.ndarray, query_bits: np.ndarray, k: int, min_candidates: int
) -> list[tuple[float, PackView, int]]:
    """The k best (similarity, view, row) of the views' rows for a unit `query`, best first (see the module doc)."""
    found: list[tuple[float, PackView, int]] = []
    by_codebook: dict[str, list[PackView]] = {}
    for view in views:
        by_codebook.setdefault(view.part.codebook.codebook_id, []).append(view)
    for group in by_codebook.values():
        codebook = group[0].part.codebook
        centroid_scores = np.einsum("ij,j->i", codebook.centroids, query)
        probes = probe_count(codebook.partitions)
        probed = np.argpartition(-centroid_scores, probes - 1)[:probes] if probes < codebook.partitions else None
        read = [_probed_rows(view, probed) for view in group]
        distances = np.concatenate(
            [_hamming(view.part.pack.bits[rows], query_bits) for view, rows in zip(group, read, strict=True)]
        )
        keep = max(min_candidates, len(distances) // ROWS_READ_PER_CANDIDATE)
        if keep < len(distances):
            chosen = np.sort(np.argpartition(distances, keep)[:keep])
        else:
            chosen = np.arange(len(distances))
        bounds = np.cumsum([0] + [len(rows) for rows in read])
        for view, rows, low, high in zip(group, read, bounds[:-1], bounds[1:], strict=True):
            pick = chosen[np.searchsorted(chosen, low) : np.searchsorted(chosen, high)] - low
            if not len(pick):
                continue
            candidates = rows[pick]
            pack = view.part.pack
            # einsum rather than @: BLAS threads cost milliseconds to wake for a product this small.
            scores = np.einsum("ij,j->i", pack.codes[candidates].astype(np.float32), query) * pack.scales[candidates]
            best = np.argsort(-scores, kind="stable")[:k]
            found.extend((float(scores[i]), view, int(candidates[i])) for i in best)
    found.sort(key=lambda hit: -hit[0])
    return found[:k]


def _probed_rows(view: PackView, partitions: np.ndarray | None) -> np.ndarray:
    rows = view.part.rows_of(partitions) if partitions is not None else np.arange(view.part.pack.rows)
    return rows[view.live[rows]] if view.live is not None else rows


_ONES: dict[int, np.ndarray] = {}


def _hamming(bits: np.ndarray, query_bits: np.ndarray) -> np.ndarray:
    """Hamming distance of each row of `bits` to `query_bits`, as float32.

    A float32 product with ones sums each row's word counts about 7x faster than numpy's integer reduction over a
    short axis (bench/retrieval.py's 100k run reads ~10k rows a query, 1M ~50k)."""
    words = bits.shape[1]
    ones = _ONES.get(words)
    if ones is None:
        ones = _ONES[words] = np.ones(words, dtype=np.float32)
    result: np.ndarray = np.bitwise_count(bits ^ query_bits).astype(np.float32) @ ones
    return result


def _ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The concatenation of arange(start, start + count) for each pair, without a Python loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    shifts = np.asarray(starts, dtype=np.int64) - (np.cumsum(counts) - counts)
    return np.arange(total, dtype=np.int64) + np.repeat(shifts, counts)
