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
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from shared.terms import terms

if TYPE_CHECKING:
    from shared.packs import PackView

Buffer = bytes | bytearray | memoryview  # what a stored file is read from (bytes, or a buffer filled in place)

SEGMENT_FORMAT = 2
# Candidates the sign-bit pass keeps for exact int8 scoring, per result asked for (and at least the floor).
CANDIDATES_PER_RESULT = 30
MIN_CANDIDATES = 300
# On large indexes a first pass over the first 256 sign bits keeps PREFIX_KEEP x the candidates for the full pass
# (8: 2,400 of 100k rows; recall@10 in bench/retrieval.py did not move from 16 down to 4).
PREFIX_WORDS = 4
PREFIX_KEEP = 8
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
    """A stable 32-bit id for a keyword (Python's hash() changes between processes).

    32 bits keep the postings small; two words of one tenant sharing an id merely share their postings.
    """
    return int.from_bytes(hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest(), "little")


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
        np.array(hashes, dtype=np.uint32),
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
    term_hashes: np.ndarray  # uint32 (terms,): each row's distinct terms, row after row
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
        """The stored form: a magic line, a JSON header, then each array's raw bytes, 8-byte aligned.

        Raw rather than .npz so that reading is zero-copy (np.frombuffer) and takes milliseconds.
        """
        header = {
            "format": SEGMENT_FORMAT,
            "tenant_id": self.tenant_id,
            "document_id": self.document_id,
            "generation": self.generation,
            "model": self.model,
        }
        return encode_arrays(_MAGIC, header, [(name, getattr(self, name)) for name in _ARRAYS])

    @classmethod
    def from_bytes(cls, body: bytes) -> Segment:
        """A segment whose arrays are views of `body` (read-only, no copy)."""
        header, arrays = decode_arrays(_MAGIC, body, "vector segment")
        if header.get("format") != SEGMENT_FORMAT:
            raise ValueError(f"unknown segment format {header.get('format')!r}")
        return cls(
            tenant_id=header["tenant_id"],
            document_id=header["document_id"],
            generation=header["generation"],
            model=header["model"],
            **{name: arrays[name] for name in _ARRAYS},
        )


def encode_arrays(magic: bytes, header: dict[str, Any], arrays: Sequence[tuple[str, np.ndarray]]) -> bytes:
    """`magic`, a JSON header (with the arrays' layout added), then each array's raw bytes, 8-byte aligned."""
    layout, offset = [], 0
    for name, array in arrays:
        array = np.ascontiguousarray(array)
        layout.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape), "offset": offset})
        offset += -(-array.nbytes // 8) * 8
    head = json.dumps({**header, "arrays": layout}).encode("utf-8")
    head += b" " * (-(len(magic) + 4 + len(head)) % 8)  # the arrays start 8-byte aligned
    parts = [magic, len(head).to_bytes(4, "little"), head]
    for _, array in arrays:
        raw = np.ascontiguousarray(array).tobytes()
        parts.append(raw + b"\0" * (-len(raw) % 8))
    return b"".join(parts)


def decode_arrays(magic: bytes, body: Buffer, what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and the arrays of `body` (written by encode_arrays), as read-only views: nothing is copied."""
    view = memoryview(body)
    if bytes(view[: len(magic)]) != magic:
        raise ValueError(f"not a DocuChat {what}")
    size = int.from_bytes(view[len(magic) : len(magic) + 4], "little")
    start = len(magic) + 4 + size
    header = json.loads(bytes(view[len(magic) + 4 : start]))
    arrays = {}
    for item in header["arrays"]:
        dtype = np.dtype(item["dtype"])
        count = int(np.prod(item["shape"], dtype=np.int64))
        array = np.frombuffer(body, dtype=dtype, count=count, offset=start + item["offset"])
        arrays[item["name"]] = array.reshape(item["shape"])
    return header, arrays


_MAGIC = b"DCSEG\n"
_ARRAYS = ("chunk_indexes", "codes", "scales", "term_hashes", "term_freqs", "term_counts", "lengths")


@dataclass(frozen=True)
class Hit:
    """A row of the index that matched a query, with its scores (0 where a search did not find it)."""

    document_id: str
    chunk_index: int
    similarity: float = 0.0  # cosine similarity of the query and the chunk's vector
    keyword_score: float = 0.0  # BM25
    keyword_coverage: float = 0.0  # share of the query's keyword weight (idf) the chunk contains


@dataclass(frozen=True)
class _Block:
    """Where one document's rows sit in a TenantIndex."""

    document_id: str
    generation: str
    start: int
    rows: int


class TenantIndex:
    """Every ready document of one tenant, searchable by vector and by keyword.

    Two kinds of rows:
    - the *flat part*: rows held in a few flat arrays of its own (not the segments it was built from): about
      1.7 KB a row at 1,536 dimensions plus ~9 bytes a distinct term a chunk. Every small tenant's index is only
      this, and a large one's holds its documents not yet compacted. It is rebuilt (copied) on every update.
    - *pack views* (shared/packs.py): partitioned packs, kept as views of the files they were read from, shared by
      every version of the index that holds them; a version only says which of their documents it serves.
    Segments whose model differs from `model` (embedded before the embedder changed) still answer keyword
    queries; their vectors are zeros and never match.
    """

    _codes: np.ndarray  # int8 (rows, dimensions)
    _scales: np.ndarray  # float32 (rows,); 0 for rows whose vectors are not usable
    _bits: np.ndarray  # uint64 (rows, words): sign bits, row by row
    _prefix: np.ndarray  # uint64 (PREFIX_WORDS, rows): the first 256 sign bits, word by word
    _lengths: np.ndarray  # int32 (rows,): words in each row
    _chunk_indexes: np.ndarray  # int32 (rows,)
    _row_block: np.ndarray  # int32 (rows,): index into _blocks
    _post_hashes: np.ndarray  # uint32 (postings,), sorted
    _post_rows: np.ndarray  # int32 (postings,)
    _post_freqs: np.ndarray  # uint16 (postings,)
    _blocks: list[_Block]
    _skipped: tuple[str, ...]
    _document_ids: list[str]
    _average_length: float
    _packs: tuple[PackView, ...] = ()
    _keyword_rows: int  # rows BM25's statistics count: the flat part's and every held pack row (until compacted)

    def __init__(
        self,
        tenant_id: str,
        model: str,
        dimensions: int,
        segments: Iterable[Segment] = (),
        rows: int | None = None,
        packs: Sequence[PackView] = (),
    ) -> None:
        """With `rows` (the segments' total), `segments` may be a generator: each is copied in and can be
        freed before the next is read, so loading never holds every segment and the index at once."""
        self.tenant_id = tenant_id
        self.model = model
        self.dimensions = dimensions
        self._fill(None, (), segments, rows)
        self._set_packs(packs)

    @property
    def rows(self) -> int:
        """Rows a search can find."""
        return self._flat_rows + sum(view.rows for view in self._packs)

    @property
    def held_rows(self) -> int:
        """Rows held in memory (a pack's rows of documents removed since it was written count too)."""
        return self._flat_rows + sum(view.part.pack.rows for view in self._packs)

    @property
    def _flat_rows(self) -> int:
        return len(self._chunk_indexes)

    @property
    def documents(self) -> dict[str, str]:
        """Document id -> generation of every document held."""
        held = self.flat_documents
        for view in self._packs:
            held.update(view.served)
        return held

    @property
    def flat_documents(self) -> dict[str, str]:
        """Document id -> generation of the documents in the flat part."""
        return {block.document_id: block.generation for block in self._blocks}

    @property
    def packs(self) -> dict[str, PackView]:
        """Pack id -> the view of each partitioned pack held."""
        return {view.part.pack.pack_id: view for view in self._packs}

    @property
    def skipped_vectors(self) -> tuple[str, ...]:
        """Documents embedded with another model: keyword search only."""
        return self._skipped

    @property
    def nbytes(self) -> int:
        arrays = (
            self._codes,
            self._scales,
            self._bits,
            self._prefix,
            self._lengths,
            self._chunk_indexes,
            self._row_block,
        )
        postings = (self._post_hashes, self._post_rows, self._post_freqs)
        packs = sum(v.part.pack.nbytes + (v.live.nbytes if v.live is not None else 0) for v in self._packs)
        return sum(a.nbytes for a in arrays) + sum(a.nbytes for a in postings) + packs

    def updated(
        self,
        keep: Iterable[str],
        added: Iterable[Segment],
        added_rows: int | None = None,
        packs: Sequence[PackView] | None = None,
    ) -> TenantIndex:
        """A new index with the flat rows of the documents in `keep` (copied from this one) and `added` (streamed
        when `added_rows` gives their total), and `packs` (None: this index's pack views)."""
        index = TenantIndex.__new__(TenantIndex)
        index.tenant_id, index.model, index.dimensions = self.tenant_id, self.model, self.dimensions
        index._fill(self, set(keep), added, added_rows)
        index._set_packs(self._packs if packs is None else packs)
        return index

    def _set_packs(self, packs: Sequence[PackView]) -> None:
        for view in packs:
            pack = view.part.pack
            if pack.tenant_id != self.tenant_id:
                raise ValueError(f"pack of tenant {pack.tenant_id} offered to tenant {self.tenant_id}")
            if pack.model != self.model or pack.dimensions != self.dimensions:
                raise ValueError(f"pack {pack.pack_id} holds {pack.model} vectors; the index is of {self.model}")
        self._packs = tuple(packs)
        self._keyword_rows = self._flat_rows + sum(view.part.pack.rows for view in self._packs)
        if self._packs:
            lengths = float(self._lengths.sum()) + sum(view.part.length_sum for view in self._packs)
            self._average_length = lengths / self._keyword_rows if self._keyword_rows else 1.0

    def _fill(
        self,
        previous: TenantIndex | None,
        keep: set[str] | tuple[()],
        added: Iterable[Segment],
        added_rows: int | None,
    ) -> None:
        if added_rows is None:
            added = list(added)
            added_rows = sum(s.rows for s in added)
        kept = [b for b in previous._blocks if b.document_id in keep] if previous else []
        total = sum(b.rows for b in kept) + added_rows
        # Allocated once at full size and filled block by block: the peak stays near the index's own size.
        self._codes = np.zeros((total, self.dimensions), dtype=np.int8)
        self._scales = np.zeros(total, dtype=np.float32)
        self._lengths = np.zeros(total, dtype=np.int32)
        self._chunk_indexes = np.zeros(total, dtype=np.int32)
        self._row_block = np.zeros(total, dtype=np.int32)
        self._blocks = []
        skipped: list[str] = []
        old_rows: list[np.ndarray] = []  # previous row numbers of the kept rows, in their new order
        cursor = 0
        for block in kept:
            assert previous is not None
            source = slice(block.start, block.start + block.rows)
            target = slice(cursor, cursor + block.rows)
            self._codes[target] = previous._codes[source]
            self._scales[target] = previous._scales[source]
            self._lengths[target] = previous._lengths[source]
            self._chunk_indexes[target] = previous._chunk_indexes[source]
            self._row_block[target] = len(self._blocks)
            old_rows.append(np.arange(block.start, block.start + block.rows, dtype=np.int32))
            if block.document_id in previous._skipped:
                skipped.append(block.document_id)
            self._blocks.append(_Block(block.document_id, block.generation, cursor, block.rows))
            cursor += block.rows
        first_added_row = cursor
        keywords: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # copies: the segments can be freed
        for segment in added:
            if segment.tenant_id != self.tenant_id:
                # Defence in depth: the loader only reads this tenant's keys, and the index checks again.
                raise ValueError(f"segment of tenant {segment.tenant_id} offered to tenant {self.tenant_id}")
            if cursor + segment.rows > total:
                raise ValueError(f"the segments hold more than the {added_rows} rows announced")
            target = slice(cursor, cursor + segment.rows)
            if segment.model == self.model and segment.dimensions == self.dimensions:
                self._codes[target] = segment.codes
                self._scales[target] = segment.scales
            else:  # left as zeros: a scale of zero never matches a vector query
                skipped.append(segment.document_id)
            self._lengths[target] = segment.lengths
            self._chunk_indexes[target] = segment.chunk_indexes
            self._row_block[target] = len(self._blocks)
            self._blocks.append(_Block(segment.document_id, segment.generation, cursor, segment.rows))
            keywords.append((segment.term_hashes.copy(), segment.term_freqs.copy(), segment.term_counts.copy()))
            cursor += segment.rows
        if cursor != total:
            raise ValueError(f"the segments hold {cursor - first_added_row} rows, not the {added_rows} announced")
        self._skipped = tuple(skipped)
        self._document_ids = [b.document_id for b in self._blocks]
        # Sign bits, two ways: all of them row by row (for the candidates' full pass), and the first 256 of
        # every row word by word (so pass 1 is a few array operations over contiguous memory).
        self._bits = sign_bits(self._codes)
        self._prefix = np.ascontiguousarray(self._bits[:, :PREFIX_WORDS].T)
        self._average_length = float(self._lengths.mean()) if total else 1.0
        self._build_postings(previous, old_rows, keywords, first_added_row)

    def _build_postings(
        self,
        previous: TenantIndex | None,
        old_rows: list[np.ndarray],
        added: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
        first_added_row: int,
    ) -> None:
        # Kept rows: their postings filtered out of the previous index (still sorted), renumbered.
        if previous is not None and old_rows:
            renumber = np.full(previous._flat_rows, -1, dtype=np.int32)
            old = np.concatenate(old_rows)
            renumber[old] = np.arange(len(old), dtype=np.int32)
            new_rows = renumber[previous._post_rows]
            keep = new_rows >= 0
            hashes, rows, freqs = previous._post_hashes[keep], new_rows[keep], previous._post_freqs[keep]
        else:
            hashes = np.zeros(0, dtype=np.uint32)
            rows = np.zeros(0, dtype=np.int32)
            freqs = np.zeros(0, dtype=np.uint16)
        # Added rows: their postings sorted, then merged into the kept ones.
        if added:
            add_hashes = np.concatenate([hashes for hashes, _, _ in added]).astype(np.uint32, copy=False)
            add_freqs = np.concatenate([freqs for _, freqs, _ in added]).astype(np.uint16, copy=False)
            counts = np.concatenate([counts for _, _, counts in added])
            add_rows = np.repeat(np.arange(first_added_row, first_added_row + len(counts), dtype=np.int32), counts)
            order = np.argsort(add_hashes, kind="stable")
            add_hashes, add_rows, add_freqs = add_hashes[order], add_rows[order], add_freqs[order]
            at = np.searchsorted(hashes, add_hashes, side="right")
            hashes = np.insert(hashes, at, add_hashes)
            rows = np.insert(rows, at, add_rows)
            freqs = np.insert(freqs, at, add_freqs)
        self._post_hashes, self._post_rows, self._post_freqs = hashes, rows, freqs

    def _hit(self, row: int, **scores: float) -> Hit:
        document_id = self._document_ids[int(self._row_block[row])]
        return Hit(document_id=document_id, chunk_index=int(self._chunk_indexes[row]), **scores)

    def vector_search(self, query: np.ndarray, k: int) -> list[Hit]:
        """The k rows most similar to `query` (a unit vector), best first."""
        if self.rows == 0 or k <= 0:
            return []
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dimensions:
            raise ValueError(f"query has {query.shape[0]} dimensions; the index has {self.dimensions}")
        count = max(MIN_CANDIDATES, CANDIDATES_PER_RESULT * k)
        rows, scores = self._flat_search(query, count, k)
        flat = [self._hit(int(row), similarity=float(score)) for row, score in zip(rows, scores, strict=True)]
        if not self._packs:
            return flat
        from shared.packs import search_packs  # shared.packs builds on this module

        packed = search_packs(self._packs, query, self._query_bits(query), k, count)
        merged = [(hit.similarity, n, hit) for n, hit in enumerate(flat)]
        merged += [
            (score, len(flat) + n, view.part.hit(row, similarity=score)) for n, (score, view, row) in enumerate(packed)
        ]
        merged.sort(key=lambda item: (-item[0], item[1]))
        return [hit for _, _, hit in merged[:k]]

    def _flat_search(self, query: np.ndarray, count: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The flat part's k best rows and their similarities, best first."""
        if self._flat_rows == 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        candidates = self._candidates(query, count)
        candidates = candidates[self._scales[candidates] > 0]  # rows of another model's vectors never match
        # einsum rather than @: BLAS threads cost milliseconds to wake for a product this small.
        scores = np.einsum("ij,j->i", self._codes[candidates].astype(np.float32), query) * self._scales[candidates]
        best = np.argsort(-scores, kind="stable")[:k]
        return candidates[best], scores[best]

    def _query_bits(self, query: np.ndarray) -> np.ndarray:
        packed = np.packbits(query > 0)
        words = -(-self.dimensions // 64)
        return np.pad(packed, (0, words * 8 - len(packed))).view(np.uint64)

    def _candidates(self, query: np.ndarray, count: int) -> np.ndarray:
        """About `count` rows whose sign bits are closest (in Hamming distance) to the query's."""
        if count >= self._flat_rows:
            return np.arange(self._flat_rows)
        packed = self._query_bits(query)
        rows = None
        if self._bits.shape[1] > PREFIX_WORDS and self._flat_rows > PREFIX_KEEP * count:
            # Pass 1 reads only the first 256 bits of every row and keeps the closest few percent.
            distance = np.bitwise_count(self._prefix[0] ^ packed[0]).astype(np.uint16)
            for word in range(1, PREFIX_WORDS):
                distance += np.bitwise_count(self._prefix[word] ^ packed[word])
            rows = _smallest(distance, PREFIX_KEEP * count)
            bits = self._bits[rows]
        else:
            bits = self._bits
        distance = np.bitwise_count(bits ^ packed).sum(axis=1, dtype=np.uint16)
        best = np.argpartition(distance, count)[:count]
        return rows[best] if rows is not None else best

    def keyword_search(self, question: str, k: int) -> list[Hit]:
        """The k rows with the best BM25 score for the question's terms, best first; none without a match.

        The statistics (rows, document frequencies, average length) count the packs' rows of documents removed
        since the pack was written, until it is compacted again; those rows are never returned."""
        query_terms = set(terms(question))
        if self.rows == 0 or not query_terms or k <= 0:
            return []
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = [
            (self._post_hashes, self._post_rows, self._post_freqs, self._lengths)
        ]
        parts += [
            (v.part.pack.post_hashes, v.part.pack.post_rows, v.part.pack.post_freqs, v.part.pack.lengths)
            for v in self._packs
        ]
        scores, covered, total_weight = self._bm25(parts, query_terms)
        matched = []  # per part: the rows that matched, in row order
        for n, part_scores in enumerate(scores):
            live = self._packs[n - 1].live if n else None
            if live is not None:
                part_scores[~live] = 0  # rows of documents this version does not serve
            matched.append(np.flatnonzero(part_scores))
        all_scores = np.concatenate([part_scores[rows] for part_scores, rows in zip(scores, matched, strict=True)])
        if not len(all_scores):
            return []
        owners = np.repeat(np.arange(len(parts)), [len(rows) for rows in matched])
        all_rows = np.concatenate(matched)
        # Stable: among equal scores the flat part comes first, then each pack, each in row order.
        best = np.argsort(-all_scores, kind="stable")[:k]
        hits = []
        for n, row in zip(owners[best].tolist(), all_rows[best].tolist(), strict=True):
            score, coverage = float(scores[n][row]), float(covered[n][row] / total_weight)
            if n == 0:
                hits.append(self._hit(row, keyword_score=score, keyword_coverage=coverage))
            else:
                hits.append(self._packs[n - 1].part.hit(row, keyword_score=score, coverage=coverage))
        return hits

    def _bm25(
        self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], query_terms: set[str]
    ) -> tuple[list[np.ndarray], list[np.ndarray], float]:
        """Each part's rows' BM25 scores and idf weight covered, and the question's total idf weight."""
        scores = [np.zeros(len(lengths), dtype=np.float64) for _, _, _, lengths in parts]
        covered = [np.zeros(len(lengths), dtype=np.float64) for _, _, _, lengths in parts]
        total_weight = 0.0
        for term in query_terms:
            wanted = np.uint32(term_hash(term))
            spans = [
                (int(np.searchsorted(h, wanted, side="left")), int(np.searchsorted(h, wanted, side="right")))
                for h, _, _, _ in parts
            ]
            frequency = sum(high - low for low, high in spans)
            idf = math.log(1 + (self._keyword_rows - frequency + 0.5) / (frequency + 0.5))
            if not frequency:
                # A word no document uses is as often the question's phrasing as a missing topic: half weight.
                total_weight += idf / 2
                continue
            total_weight += idf
            for n, ((_, post_rows, post_freqs, lengths), (low, high)) in enumerate(zip(parts, spans, strict=True)):
                if low == high:
                    continue
                rows = post_rows[low:high]
                tf = post_freqs[low:high].astype(np.float64)
                norm = BM25_K1 * (1 - BM25_B + BM25_B * lengths[rows] / self._average_length)
                scores[n][rows] += idf * tf * (BM25_K1 + 1) / (tf + norm)
                covered[n][rows] += idf
        return scores, covered, total_weight


def sign_bits(codes: np.ndarray) -> np.ndarray:
    """Each row's sign bits (1 where the component is positive), packed into uint64 words, row by row."""
    total, dimensions = codes.shape
    words = -(-dimensions // 64)
    bits = np.zeros((total, words), dtype=np.uint64)
    for start in range(0, total, 8192):  # packed in slices, so no full-size boolean copy is made
        stop = min(total, start + 8192)
        packed = np.packbits(codes[start:stop] > 0, axis=1)
        bits[start:stop] = np.pad(packed, ((0, 0), (0, words * 8 - packed.shape[1]))).view(np.uint64)
    return bits


def _smallest(values: np.ndarray, count: int) -> np.ndarray:
    """Indexes of at least `count` of the smallest small non-negative integers in `values` (ties included).

    A histogram finds the cut in one pass, cheaper than a partial sort of the whole array.
    """
    cumulative = np.cumsum(np.bincount(values))
    cut = int(np.searchsorted(cumulative, count))
    return np.flatnonzero(values <= cut)
