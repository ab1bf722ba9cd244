"""Ingestion throughput: chunks per second, and embedding calls per 1,000 chunks.

    python -m bench.ingestion [--pages 500] [--embedders openai local] [--out bench/results/ingestion.json]

A PDF of --pages pages (about 350 words a page) is uploaded to emulated S3 (moto's server, in this process)
and ingested by the service's own IngestionService: parse, chunk, store the chunks, embed them in batches,
meter the tokens, write the vector parts, publish the segment. The clock runs from the first byte read to
the document being ready.

- `openai`: the official client against the local OpenAI-compatible server (local/fake_openai.py), so
  the figure is our pipeline plus loopback HTTP, not OpenAI's latency. Its calls are counted at the server.
- `local`: the offline embedder (all-MiniLM-L6-v2 in numpy), whose model time dominates.

The goal for embedding calls is at most 2 per 1,000 chunks (OpenAI takes up to 2,048 inputs a call).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench._report import write_report
from bench.cold_start import fake_aws_credentials
from bench.quality import emulated_aws
from local.fake_openai import FakeOpenAI
from shared.container import Container
from shared.ids import new_id, utc_now
from shared.ingestion import IngestOutcome, Upload
from shared.models import Principal, Tenant
from shared.parsing import PDF
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "ingestion.json"
SENTENCES = (
    "The maintenance schedule lists every pump by its tag number and its service interval.",
    "Operators record pressure, temperature and vibration at the start of each shift.",
    "A reading outside the safe band is reported to the shift lead within ten minutes.",
    "Spare seals are kept in the blue cabinet beside the control room.",
)


def make_pdf(pages: int) -> bytes:
    from fpdf import FPDF  # a dev dependency: the benchmark's input, not the service's

    document = FPDF()
    document.set_font("helvetica", size=10)
    for page in range(pages):
        document.add_page()
        lines = [f"Section {page}.{n}: " + " ".join(SENTENCES) for n in range(4)]
        document.multi_cell(0, 5, f"Page {page + 1}. Pump P-{page:04d} is checked weekly.\n" + "\n".join(lines * 2))
    return bytes(document.output())


def run(embedder: str, env: dict[str, str], body: bytes, openai_url: str) -> dict[str, Any]:
    values = {**env, "DOCUCHAT_EMBEDDER": embedder, "OPENAI_API_KEY": "sk-bench" if embedder == "openai" else ""}
    values["OPENAI_BASE_URL"] = openai_url
    values["DOCUCHAT_MAX_UPLOAD_BYTES"] = str(max(len(body), 25 * 1024 * 1024))
    with fake_aws_credentials(values):
        container = Container(Settings())
    tenant = Tenant(tenant_id=new_id("t"), name="Bench", email="ops@bench.test", created_at=utc_now())
    container.tenants.create(tenant)
    principal = Principal(tenant_id=tenant.tenant_id, key_id="kbench000")
    document, _, _ = container.document_service.create_upload(principal, "Manual", PDF, len(body))
    container.blobs.put(document.source_key, body, PDF)
    calls: list[int] = []
    embed = container.embedder.embed

    def counted(texts: Any) -> Any:
        calls.append(len(texts))
        return embed(texts)

    container.embedder.embed = counted  # type: ignore[method-assign]
    started = time.perf_counter()
    outcome = container.ingestion.ingest(Upload(document.source_key, "bench"), time_left=lambda: 900.0)
    seconds = time.perf_counter() - started
    if outcome != IngestOutcome.READY:
        raise RuntimeError(f"ingestion ended {outcome.value}")
    chunks = container.documents.get(tenant.tenant_id, document.document_id).chunk_count  # type: ignore[union-attr]
    return {
        "embedding_model": container.embedder.model,
        "chunks": chunks,
        "seconds": round(seconds, 2),
        "chunks_per_second": round(chunks / seconds, 1),
        "embedding_calls": len(calls),
        "embedding_calls_per_1000_chunks": round(1000 * len(calls) / chunks, 2),
        "largest_call_inputs": max(calls),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=500)
    parser.add_argument("--embedders", nargs="+", default=["openai", "local"])
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    print(f"[ingestion] making a {args.pages}-page PDF", file=sys.stderr)
    body = make_pdf(args.pages)
    report: dict[str, Any] = {
        "benchmark": "ingestion",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "document": {"pages": args.pages, "bytes": len(body)},
        "goal": {"embedding_calls_per_1000_chunks": 2},
        "results": {},
    }
    with emulated_aws() as env, FakeOpenAI() as fake_openai:
        for embedder in args.embedders:
            print(f"[ingestion] {embedder}: ingesting", file=sys.stderr)
            result = run(embedder, env, body, fake_openai.base_url)
            report["results"][embedder] = result
            print(
                f"[ingestion] {embedder}: {result['chunks']} chunks in {result['seconds']} s "
                f"({result['chunks_per_second']}/s), "
                f"{result['embedding_calls_per_1000_chunks']} calls per 1,000 chunks",
                file=sys.stderr,
            )
    write_report(args.out, report)
    print(f"[ingestion] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
