"""The large tenants of bench/retrieval.py (1M chunks): drawn in blocks, published to emulated AWS, compacted by
the store, and loaded cold from S3 by fresh processes.

Emulated AWS is the local runtime's (`make dev`): moto's server for S3, in a process of its own (as S3 is not in
the chat function's process), and DynamoDB Local for the tables (moto's transactions copy the whole table each
time: 10,000 publishes would take hours). The tenant is set up as 10,000 publishes leave it (each document's
segment in S3, its `vseg#` entry, the head's counters), written in bulk since publishing is not what is measured;
then `S3VectorStore.compact` packs it, as the ingestion function would. Nothing here is timed but the compaction,
which is reported for information.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from local.dynamodb_local import DynamoDBLocal
from shared.data.aws import AwsClients
from shared.data.dynamo import batch_write, to_item
from shared.data.vectors import MANIFEST_SK, SEGMENT_PREFIX, S3VectorStore, segment_key
from shared.packs import Codebook
from shared.settings import Settings
from shared.vectors import Segment

TABLE = "bench-retrieval-documents"
BUCKET = "bench-retrieval-vectors"
REGION = "us-east-1"
BLOCK_DOCUMENTS = 40  # documents drawn at a time: 4,000 rows, 25 MB of float32
SEED_THREADS = 16
# Never real AWS: every client of this module is pointed at loopback, and moto takes any credentials.
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": REGION}


@dataclass(frozen=True)
class StreamedCorpus:
    """What the measuring processes need of a corpus too large to hold: queries, exact answers, layout."""

    size: int
    dimensions: int
    documents: list[tuple[str, int, int]]  # (document id, first row, rows)
    warmup: np.ndarray
    queries: np.ndarray
    exact: np.ndarray  # (queries, k): row numbers of the exact float32 top k
    keyword_questions: list[str]
    data_check: dict[str, float]
    segment_bytes: int


def stream_corpus(
    generator: Any,
    seed: int,
    size: int,
    queries: int,
    warmup: int,
    k: int,
    chunks_per_document: int,
    tenant: str,
    model: str,
    generation: str,
    workdir: Path,
    progress: Callable[[str], None],
) -> StreamedCorpus:
    """Draw `size` chunks block by block with bench.retrieval's generator, write one segment file a document to
    workdir/segments, and keep only what the measurements need: the exact float32 top k of each query is updated
    block by block, so the float32 vectors are never all in memory."""
    gen = generator
    dimensions = gen.dimensions
    document_count = -(-size // chunks_per_document)
    topics = np.repeat(gen.topics_drawn(document_count), chunks_per_document)[:size]
    subtopics = gen.subtopics_of(topics)
    about = gen.rng.integers(0, size, warmup + queries)
    asked = gen.vectors(topics[about], subtopics[about])
    timed = asked[warmup:]
    keyword_questions = [
        f"topic{t} subtopic{s}" for t, s in zip(topics[about[warmup:]], subtopics[about[warmup:]], strict=True)
    ]
    best_scores: np.ndarray = np.full((queries, k), -np.inf, dtype=np.float32)
    best_rows: np.ndarray = np.zeros((queries, k), dtype=np.int64)
    pairs: list[np.ndarray] = []
    (workdir / "segments").mkdir(parents=True, exist_ok=True)
    documents, segment_bytes, began = [], 0, time.perf_counter()
    block_rows = BLOCK_DOCUMENTS * chunks_per_document
    for block, start in enumerate(range(0, size, block_rows)):
        end = min(size, start + block_rows)
        gen.rng = np.random.default_rng([seed, dimensions, size, block])  # each block its own stream
        vectors = gen.vectors(topics[start:end], subtopics[start:end])
        texts = gen.texts(topics[start:end], subtopics[start:end])
        for first in range(start, end, chunks_per_document):
            rows = min(chunks_per_document, end - first)
            document_id = f"doc-{first // chunks_per_document:06d}"
            segment = Segment.build(
                tenant_id=tenant,
                document_id=document_id,
                generation=generation,
                model=model,
                chunk_indexes=range(rows),
                vectors=vectors[first - start : first - start + rows],
                texts=texts[first - start : first - start + rows],
            )
            body = segment.to_bytes()
            (workdir / "segments" / f"{document_id}.seg").write_bytes(body)
            documents.append((document_id, first, rows))
            segment_bytes += len(body)
        scores = timed @ vectors.T  # (queries, block)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_rows = np.concatenate([best_rows, np.broadcast_to(np.arange(start, end), scores.shape)], axis=1)
        top = np.argpartition(-merged_scores, k - 1, axis=1)[:, :k]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_rows = np.take_along_axis(merged_rows, top, axis=1)
        left, right = gen.rng.integers(0, end - start, (2, 20))
        pairs.append(np.einsum("ij,ij->i", vectors[left[left != right]], vectors[right[left != right]]))
        if block % 25 == 24 or end == size:
            progress(f"    drawn {end}/{size} rows ({time.perf_counter() - began:.0f} s)")
    order = np.argsort(-best_scores, axis=1, kind="stable")
    best_scores = np.take_along_axis(best_scores, order, axis=1)
    pair_cosines = np.concatenate(pairs)
    check = {
        "random_pair_cosine_mean": round(float(pair_cosines.mean()), 3),
        "random_pair_cosine_p5": round(float(np.percentile(pair_cosines, 5)), 3),
        "random_pair_cosine_p95": round(float(np.percentile(pair_cosines, 95)), 3),
        "query_top1_cosine_mean": round(float(best_scores[:, 0].mean()), 3),
        "query_top10_cosine_mean": round(float(best_scores[:, -1].mean()), 3),
        "query_top1_minus_top10_mean": round(float((best_scores[:, 0] - best_scores[:, -1]).mean()), 4),
    }
    return StreamedCorpus(
        size=size,
        dimensions=dimensions,
        documents=documents,
        warmup=asked[:warmup],
        queries=timed,
        exact=np.take_along_axis(best_rows, order, axis=1),
        keyword_questions=keyword_questions,
        data_check=check,
        segment_bytes=segment_bytes,
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def emulated_aws(workdir: Path) -> Iterator[dict[str, str]]:
    """moto's server (S3) in a process of its own and DynamoDB Local, with the bucket and table made; yields the
    endpoints. Both are stopped on exit."""
    port = _free_port()
    log = (workdir / "moto.log").open("wb")
    moto = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    ddb = DynamoDBLocal(jvm_args=())  # full JIT: it serves thousands of requests
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError as error:
                if time.monotonic() > deadline or moto.poll() is not None:
                    tail = (workdir / "moto.log").read_text()[-2000:]
                    raise RuntimeError(f"moto's server did not start: {tail}") from error
                time.sleep(0.2)
        ddb.start()
        endpoints = {"s3": f"http://127.0.0.1:{port}", "dynamodb": ddb.endpoint_url, "moto_pid": str(moto.pid)}
        clients = aws_clients(endpoints)
        clients.s3.create_bucket(Bucket=BUCKET)
        clients.dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield endpoints
    finally:
        ddb.stop()
        moto.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            moto.wait(timeout=10)
        if moto.poll() is None:
            moto.kill()
        log.close()


def aws_clients(endpoints: dict[str, str]) -> AwsClients:
    for name, value in FAKE_CREDENTIALS.items():
        os.environ.setdefault(name, value)
    settings = Settings(stage="bench", aws_endpoint_url=endpoints["s3"], dynamodb_endpoint_url=endpoints["dynamodb"])
    return AwsClients(settings)


def store_for(endpoints: dict[str, str], model: str, dimensions: int, cache_rows: int = 4_000_000) -> S3VectorStore:
    clients = aws_clients(endpoints)
    return S3VectorStore(clients.dynamodb, TABLE, clients.s3, BUCKET, model, dimensions, cache_rows=cache_rows)


def seed_tenant(
    endpoints: dict[str, str], corpus: StreamedCorpus, workdir: Path, tenant: str, model: str, generation: str
) -> None:
    """The state 10,000 publishes leave: every segment in S3, its manifest entry, the head's counters."""
    clients = aws_clients(endpoints)

    def put(document: tuple[str, int, int]) -> None:
        document_id = document[0]
        body = (workdir / "segments" / f"{document_id}.seg").read_bytes()
        clients.s3.put_object(Bucket=BUCKET, Key=segment_key(tenant, document_id, generation), Body=body)

    with ThreadPoolExecutor(max_workers=SEED_THREADS) as pool:
        list(pool.map(put, corpus.documents))
    entries = [
        {
            "PutRequest": {
                "Item": to_item(
                    {
                        "pk": tenant,
                        "sk": SEGMENT_PREFIX + document_id,
                        "generation": generation,
                        "key": segment_key(tenant, document_id, generation),
                        "rows": rows,
                        "model": model,
                    }
                )
            }
        }
        for document_id, _, rows in corpus.documents
    ]
    batch_write(clients.dynamodb, TABLE, entries)
    head = {"pk": tenant, "sk": MANIFEST_SK, "version": len(entries), "loose_documents": len(entries), "dead_rows": 0}
    clients.dynamodb.put_item(TableName=TABLE, Item=to_item(head))


def compact(endpoints: dict[str, str], tenant: str, model: str, dimensions: int) -> dict[str, Any]:
    """S3VectorStore.compact until nothing is left to do, timed; what it made."""
    store = store_for(endpoints, model, dimensions)
    store.compact_min_documents = 1  # compacted as soon as asked, whatever the tenant's size
    began = time.perf_counter()
    runs = []
    while True:
        result = store.compact(tenant, datetime.now(UTC))
        runs.append(result)
        if result.skipped or not result.more:
            break
    seconds = time.perf_counter() - began
    manifest = store.manifest(tenant)
    return {
        "seconds": round(seconds, 1),
        "runs": len(runs),
        "packs": len(manifest.packs),
        "partitioned_packs": sum(1 for p in manifest.packs.values() if p.codebook),
        "documents_packed": sum(r.documents_packed for r in runs),
        "pack_bytes_mb": round(sum(p.bytes for p in manifest.packs.values()) / 2**20, 1),
        "partitions": _partitions(store, tenant, manifest),
        "loose_documents_left": sum(1 for e in manifest.documents.values() if manifest.pack_of(e) is None),
    }


def _partitions(store: S3VectorStore, tenant: str, manifest: Any) -> int:
    from shared.data.vectors import codebook_key

    codebooks = {p.codebook for p in manifest.packs.values() if p.codebook}
    if not codebooks:
        return 0
    return Codebook.from_bytes(store.read_object(codebook_key(tenant, sorted(codebooks)[0]))).partitions


class MemoryS3:
    """S3 answered from memory: each object fetched from the emulator once (not timed), then served again, whole
    or in byte ranges, at the cost of a copy. For timing the loader without the emulator's transfer."""

    def __init__(self, s3: Any) -> None:
        self._s3 = s3
        self.objects: dict[str, bytes] = {}

    def get_object(self, Bucket: str, Key: str, Range: str | None = None) -> dict[str, Any]:
        if Key not in self.objects:
            self.objects[Key] = self._s3.get_object(Bucket=Bucket, Key=Key)["Body"].read()
        body = self.objects[Key]
        if Range is not None:
            first, last = (int(n) for n in Range.removeprefix("bytes=").split("-"))
            body = body[first : last + 1]
        return {"Body": io.BytesIO(body)}


class RecordedDynamoDB:
    """DynamoDB reads answered from memory once made (get_item and query pages): the manifest as the loader
    reads it, without DynamoDB Local's round trips."""

    def __init__(self, dynamodb: Any) -> None:
        self._db = dynamodb
        self._answers: dict[str, Any] = {}

    def _answer(self, operation: str, params: dict[str, Any]) -> Any:
        key = operation + json.dumps(params, sort_keys=True)
        if key not in self._answers:
            self._answers[key] = getattr(self._db, operation)(**params)
        return self._answers[key]

    def get_item(self, **params: Any) -> Any:
        return self._answer("get_item", params)

    def query(self, **params: Any) -> Any:
        return self._answer("query", params)


def memory_store(endpoints: dict[str, str], tenant: str, model: str, dimensions: int) -> Callable[[], S3VectorStore]:
    """A factory of stores without warm indexes whose S3 and DynamoDB answer from memory, primed by one load of
    `tenant` (whose index is dropped)."""
    clients = aws_clients(endpoints)
    s3, dynamodb = MemoryS3(clients.s3), RecordedDynamoDB(clients.dynamodb)

    def new() -> S3VectorStore:
        return S3VectorStore(dynamodb, TABLE, s3, BUCKET, model, dimensions, cache_rows=4_000_000)

    new().index(tenant)
    return new


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value))
