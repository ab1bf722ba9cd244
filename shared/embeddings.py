"""Embedders: text to unit vectors, OpenAI's in batches or the local model without a key.

Both report the tokens they consumed, which are metered as usage of kind `embedding`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from shared.data.openai import OpenAIConnections, openai_client, openai_module
from shared.lazy import lazy
from shared.terms import estimate_tokens

if TYPE_CHECKING:
    import numpy as np

    from shared.settings import Settings

# OpenAI's limits on one embeddings request: 2,048 inputs, 300,000 tokens summed over them.
OPENAI_MAX_INPUTS = 2048
OPENAI_MAX_REQUEST_TOKENS = 300_000


class EmbeddingError(Exception):
    """The embedding model could not be reached or refused the input, after retries."""


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # float32 (n, dimensions), rows of unit length
    tokens: int  # input tokens consumed, as the model reports them


class Embedder(Protocol):
    model: str
    dimensions: int

    def embed(self, texts: Sequence[str]) -> Embeddings: ...

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        """(start, end) ranges of `texts` that one call should embed together."""
        ...


def token_limited_batches(texts: Sequence[str], max_inputs: int, max_tokens: int) -> Iterator[tuple[int, int]]:
    """Consecutive ranges holding at most `max_inputs` texts and `max_tokens` estimated tokens."""
    start, tokens = 0, 0
    for index, text in enumerate(texts):
        cost = estimate_tokens(text)
        if index > start and (index - start >= max_inputs or tokens + cost > max_tokens):
            yield start, index
            start, tokens = index, 0
        tokens += cost
    if start < len(texts):
        yield start, len(texts)


class OpenAIEmbedder:
    """The embeddings endpoint through the official client: many chunks a call, retried with backoff."""

    def __init__(self, settings: Settings, connections: OpenAIConnections | None = None) -> None:
        self._settings = settings
        self._connections = connections
        self.model = settings.embedding_model
        self.dimensions = settings.embedding_dimensions

    @lazy
    def _client(self) -> Any:
        settings = self._settings
        return openai_client(
            settings, settings.embedding_timeout_seconds, settings.embedding_max_retries, self._connections
        )

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        # Below the request limit by a margin: the token estimate is only an estimate.
        max_tokens = min(self._settings.embedding_batch_tokens, OPENAI_MAX_REQUEST_TOKENS)
        return token_limited_batches(texts, min(self._settings.embedding_batch_size, OPENAI_MAX_INPUTS), max_tokens)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        import numpy as np

        openai = openai_module()

        if not texts:
            return Embeddings(np.zeros((0, self.dimensions), dtype=np.float32), 0)
        try:
            response = self._client.embeddings.create(
                model=self.model,
                input=[text or " " for text in texts],  # the API refuses empty strings
                # Only the text-embedding-3 models take a size; the others have one fixed size.
                **({"dimensions": self.dimensions} if self.model.startswith("text-embedding-3") else {}),
            )
        except openai.OpenAIError as error:
            raise EmbeddingError(f"{type(error).__name__}: {error}") from error
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise EmbeddingError(f"asked for {len(texts)} embeddings, got {len(rows)}")
        vectors = np.array([row.embedding for row in rows], dtype=np.float32)
        if vectors.shape[1] != self.dimensions:
            raise EmbeddingError(f"the model answered {vectors.shape[1]} dimensions, not {self.dimensions}")
        tokens = response.usage.prompt_tokens if response.usage else sum(estimate_tokens(t) for t in texts)
        return Embeddings(normalize(vectors), tokens)


class LocalEmbedder:
    """all-MiniLM-L6-v2 run in-process (shared/minilm.py): no key, no network."""

    def __init__(self, batch_size: int = 32) -> None:
        from shared.minilm import MINILM_MODEL

        self._model = _shared_minilm(batch_size)
        self.model = MINILM_MODEL
        self.dimensions = self._model.dimensions
        self._batch_size = batch_size

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        # Calls are in-process, so a batch is just a unit of progress: a few seconds of work.
        return token_limited_batches(texts, 8 * self._batch_size, 10**9)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        vectors, tokens = self._model.embed(texts)
        return Embeddings(vectors, tokens)


@functools.cache
def _shared_minilm(batch_size: int) -> Any:
    """One model per process: its ~90 MB of weights load once, however many containers are built."""
    from shared.minilm import MiniLMEmbedder

    return MiniLMEmbedder(batch_size=batch_size)


def normalize(vectors: np.ndarray) -> np.ndarray:
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def build_embedder(settings: Settings, connections: OpenAIConnections | None = None) -> Embedder:
    """OpenAI's embeddings with a key (unless settings say local), else the local model."""
    if settings.embedder == "openai" or (settings.embedder == "auto" and settings.llm_enabled):
        return OpenAIEmbedder(settings, connections)
    return LocalEmbedder()
