"""Embedders for tests: fast, deterministic, and controllable (failures, call counts)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence

import numpy as np

from shared.embeddings import EmbeddingError, Embeddings, token_limited_batches
from shared.terms import estimate_tokens, terms


class HashingEmbedder:
    """Words hashed into a small vector: texts sharing words are close, as with a real model, in microseconds."""

    def __init__(self, dimensions: int = 64, batch_size: int = 16, model: str = "test-hashing") -> None:
        self.model = model
        self.dimensions = dimensions
        self.batch_size = batch_size
        self.calls: list[int] = []  # texts per call
        self.fail_calls = 0  # the next this-many calls raise EmbeddingError

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        return token_limited_batches(texts, self.batch_size, 10**9)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        if self.fail_calls:
            self.fail_calls -= 1
            raise EmbeddingError("injected failure")
        self.calls.append(len(texts))
        vectors = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in terms(text):
                digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
                vectors[row, digest[0] % self.dimensions] += 1.0 if digest[1] % 2 else -1.0
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        vectors = vectors / np.where(norms > 0, norms, 1.0)
        return Embeddings(vectors.astype(np.float32), sum(estimate_tokens(t) for t in texts))
