"""Embedding batches sized by inputs and estimated tokens, and unit-length vectors."""

from __future__ import annotations

import random

import numpy as np
import pytest

from shared.embeddings import (
    OPENAI_MAX_INPUTS,
    OPENAI_MAX_REQUEST_TOKENS,
    OpenAIEmbedder,
    normalize,
    token_limited_batches,
)
from shared.lazy import lazy
from shared.settings import Settings
from shared.terms import estimate_tokens


def text_of(tokens: int) -> str:
    """A text of exactly `tokens` estimated tokens: words of 4 letters are one each."""
    return " ".join(["word"] * tokens)


def assert_covers_in_order(batches: list[tuple[int, int]], count: int) -> None:
    """Every index once, in order: each range starts where the last ended, none is empty, the last ends at count."""
    assert [start for start, _ in batches] == [0] + [end for _, end in batches[:-1]]
    assert all(start < end for start, end in batches)
    assert batches[-1][1] == count


class TestTokenLimitedBatches:
    @pytest.mark.parametrize(("max_inputs", "max_tokens"), [(1, 10**9), (7, 10**9), (50, 300), (3, 40), (1000, 1)])
    def test_batches_respect_both_limits_and_cover_every_text_once_in_order(
        self, max_inputs: int, max_tokens: int
    ) -> None:
        rng = random.Random(max_inputs * 31 + max_tokens)
        texts = [text_of(rng.randint(0, 60)) for _ in range(500)]
        batches = list(token_limited_batches(texts, max_inputs, max_tokens))
        assert_covers_in_order(batches, len(texts))
        for start, end in batches:
            assert end - start <= max_inputs
            tokens = sum(estimate_tokens(t) for t in texts[start:end])
            assert tokens <= max_tokens or end - start == 1  # only a text over the budget alone may exceed it

    def test_batches_are_as_full_as_the_limits_allow(self) -> None:
        assert list(token_limited_batches([text_of(10)] * 10, 4, 10**9)) == [(0, 4), (4, 8), (8, 10)]
        assert list(token_limited_batches([text_of(10)] * 10, 100, 30)) == [(0, 3), (3, 6), (6, 9), (9, 10)]

    def test_a_text_over_the_token_budget_gets_a_batch_of_its_own(self) -> None:
        texts = [text_of(5), text_of(5), text_of(500), text_of(5), text_of(500), text_of(500)]
        assert list(token_limited_batches(texts, 100, 100)) == [(0, 2), (2, 3), (3, 4), (4, 5), (5, 6)]

    def test_no_texts_give_no_batches(self) -> None:
        assert list(token_limited_batches([], 10, 100)) == []

    def test_empty_texts_are_batched_too(self) -> None:
        assert list(token_limited_batches(["", "", ""], 2, 100)) == [(0, 2), (2, 3)]


class TestOpenAIBatches:
    def test_a_thousand_chunks_of_220_tokens_take_at_most_two_calls(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def no_network(self: OpenAIEmbedder) -> None:
            raise AssertionError("batches() must not reach the API")

        monkeypatch.setattr(OpenAIEmbedder, "_client", lazy(no_network))
        texts = [text_of(220)] * 1_000
        assert estimate_tokens(texts[0]) == 220
        batches = list(OpenAIEmbedder(Settings()).batches(texts))
        assert len(batches) <= 2
        assert_covers_in_order(batches, len(texts))

    def test_batches_stay_within_openais_request_limits(self) -> None:
        settings = Settings(embedding_batch_size=2048, embedding_batch_tokens=300_000)
        texts = [text_of(1)] * 5_000 + [text_of(8_000)] * 100
        batches = list(OpenAIEmbedder(settings).batches(texts))
        assert_covers_in_order(batches, len(texts))
        for start, end in batches:
            assert end - start <= OPENAI_MAX_INPUTS
            assert sum(estimate_tokens(t) for t in texts[start:end]) <= OPENAI_MAX_REQUEST_TOKENS

    def test_the_settings_bound_a_batch(self) -> None:
        settings = Settings(embedding_batch_size=3, embedding_batch_tokens=1_000)
        assert list(OpenAIEmbedder(settings).batches([text_of(400)] * 7)) == [(0, 2), (2, 4), (4, 6), (6, 7)]
        assert list(OpenAIEmbedder(settings).batches([text_of(1)] * 7)) == [(0, 3), (3, 6), (6, 7)]


class TestNormalize:
    def test_rows_become_unit_length_and_zero_rows_stay_zero(self) -> None:
        vectors = np.array([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0], [-2.0, 0.0, 0.0], [1e-3, 0.0, 0.0]], dtype=np.float32)
        with np.errstate(divide="raise", invalid="raise"):
            unit = normalize(vectors)
        assert unit.dtype == np.float32
        assert unit[0].tolist() == pytest.approx([0.6, 0.8, 0.0])
        assert unit[1].tolist() == [0.0, 0.0, 0.0]
        assert unit[2].tolist() == [-1.0, 0.0, 0.0]
        assert np.linalg.norm(unit[[0, 2, 3]], axis=1) == pytest.approx([1.0, 1.0, 1.0])

    def test_random_rows_become_unit_length_and_keep_their_direction(self) -> None:
        vectors = np.random.default_rng(0).normal(size=(50, 64)).astype(np.float32) * 7
        unit = normalize(vectors)
        assert np.linalg.norm(unit, axis=1) == pytest.approx(np.ones(50), abs=1e-5)
        assert np.sign(unit).tolist() == np.sign(vectors).tolist()
