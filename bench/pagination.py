"""The first page of a tenant's documents with 10 documents and with 10,000, on DynamoDB Local.

    python -m bench.pagination [--documents 10000] [--out bench/results/pagination.json]

A page is one Query with a Limit (shared/data/dynamo.py: query_page), so its cost should not depend on how
many documents the tenant has. Beside it, the way lists worked before pagination (read every document, then
sort) on the same table, as the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import boto3

from bench._report import write_report
from local.bootstrap import create_tables
from local.dynamodb_local import DynamoDBLocal
from shared import resources
from shared.data.documents import DOC_PREFIX, DocumentRepository, _document
from shared.data.dynamo import batch_write, query_all, to_item, values
from shared.ids import new_id

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "pagination.json"
STAGE = "bench"
PAGE = 50
RUNS = 30


def fill(client: Any, table: str, tenant_id: str, count: int) -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    writes = []
    for n in range(count):
        document_id = new_id("d")
        at = (now + timedelta(seconds=n)).isoformat()
        item = {
            "pk": tenant_id,
            "sk": DOC_PREFIX + document_id,
            "tenant_id": tenant_id,
            "document_id": document_id,
            "title": f"Document {n}",
            "content_type": "text/plain",
            "status": "ready",
            "source_key": f"tenants/{tenant_id}/documents/{document_id}/source",
            "size_bytes": 1000,
            "chunk_count": 3,
            "chunks_embedded": 0,
            "created_at": at,
            "updated_at": at,
        }
        writes.append({"PutRequest": {"Item": to_item(item)}})
    batch_write(client, table, writes)


def median_ms(call: Callable[[], Any]) -> float:
    call()  # warm
    timings = []
    for _ in range(RUNS):
        began = time.perf_counter()
        call()
        timings.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(timings), 2)


def read_all_then_sort(client: Any, table: str, tenant_id: str) -> list[Any]:
    """Before pagination: every document of the tenant, sorted in memory."""
    items = query_all(
        client,
        TableName=table,
        KeyConditionExpression="pk = :tenant AND begins_with(sk, :prefix)",
        ExpressionAttributeValues=values(tenant=tenant_id, prefix=DOC_PREFIX),
    )
    return sorted((_document(item) for item in items), key=lambda d: d.created_at, reverse=True)[:PAGE]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    print(json.dumps(run(args.documents, args.out), indent=2))


def run(documents: int, out: Path | None) -> dict[str, Any]:
    with DynamoDBLocal(jvm_args=()) as server:
        client = boto3.client("dynamodb", **server.client_kwargs())
        create_tables(client, STAGE)
        table = resources.DOCUMENTS.physical_name(STAGE)
        repository = DocumentRepository(client, table)
        results: dict[str, Any] = {}
        for label, count in (("small", 10), ("large", documents)):
            tenant_id = new_id("t")
            fill(client, table, tenant_id, count)
            page = repository.page_documents(tenant_id, PAGE)
            assert len(page.items) == min(PAGE, count)
            results[label] = {
                "documents": count,
                "first_page_ms": median_ms(partial(repository.page_documents, tenant_id, PAGE)),
                "read_all_then_sort_ms": median_ms(partial(read_all_then_sort, client, table, tenant_id)),
            }
            print(f"{count:>6} documents: {results[label]}", flush=True)
    result = {
        "benchmark": "pagination",
        "page_size": PAGE,
        "runs": RUNS,
        "backend": "DynamoDB Local",
        "results": results,
        "first_page_ratio_large_to_small": round(
            results["large"]["first_page_ms"] / max(results["small"]["first_page_ms"], 0.01), 2
        ),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if out:
        write_report(out, result)
    return result


if __name__ == "__main__":
    main()
