"""Retrieval quality: hit@1 and hit@5 of the cited documents on the project's own evaluation set.

    python -m bench.quality [--embedders local keyword-only openai] [--out bench/results/rag_quality.json]

The corpus and questions are in bench/quality/ (see its README). For each embedder, a fresh tenant gets
every document through the service's own path (DocumentService.create_inline, then IngestionService), on
emulated AWS (moto's server, in this process). Then each question goes through ChatService.chat with
top_k 5, as a tenant's request would, and the cited documents are compared with the expected ones.

- hit@k: the share of answerable questions with an expected document among the first k citations.
- said_unknown: per style (near-topic `unanswerable`, `off-topic`), the share of questions with no answer in
  the corpus that were answered "I don't know" (route not_found).
- answered: the share of answerable questions that got any citation at all.

Embedders:
- `local`: the offline default (all-MiniLM-L6-v2 in-process);
- `keyword-only`: vectors off (an embedder with no signal), so retrieval is BM25 alone: the baseline;
- `fake-openai`: the OpenAI path end to end (official client, batching, metering) against the local
  OpenAI-compatible server, whose embeddings are hashed words: it measures the plumbing, not a model;
- `openai`: a given embedder, OpenAI's, with OPENAI_API_KEY (and OPENAI_BASE_URL, EMBEDDING_MODEL) from the
  environment; skipped without a key. Note that its chat answers call the model too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from moto.server import ThreadedMotoServer

from bench.cold_start import fake_aws_credentials
from local.bootstrap import create_all
from local.fake_openai import FakeOpenAI
from shared.container import Container
from shared.embeddings import Embeddings
from shared.ids import new_id, utc_now
from shared.ingestion import IngestOutcome, Upload
from shared.models import Principal, Tenant
from shared.settings import Settings
from stacks.stage_config import load_stage

REPO_ROOT = Path(__file__).resolve().parent.parent
QUALITY_DIR = REPO_ROOT / "bench" / "quality"
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "rag_quality.json"
STAGE = "quality"
SENDER = "billing@quality.docuchat.test"
TOP_K = 5


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    expected: tuple[str, ...]
    style: str
    history: tuple[str, ...] = ()  # a follow-up's earlier questions, asked first in the same conversation


@dataclass(frozen=True)
class Answered:
    question: Question
    ranked: list[str]  # cited documents, in order of their first citation
    route: str


def load_questions() -> list[Question]:
    raw = json.loads((QUALITY_DIR / "questions.json").read_text())
    return [
        Question(q["id"], q["question"], tuple(q["expected"]), q["style"], tuple(q.get("history", ()))) for q in raw
    ]


class KeywordOnly:
    """An embedder with no signal (zero vectors): retrieval then answers from keyword search alone."""

    model = "keyword-only"
    dimensions = 8

    def batches(self, texts: Sequence[str]) -> Iterator[tuple[int, int]]:
        yield 0, len(texts)

    def embed(self, texts: Sequence[str]) -> Embeddings:
        return Embeddings(np.zeros((len(texts), self.dimensions), dtype=np.float32), 0)


@contextmanager
def emulated_aws() -> Iterator[dict[str, str]]:
    """moto's server on loopback with the stage's resources; yields the functions' environment."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with fake_aws_credentials():
        server.start()
        try:
            host, port = server.get_host_and_port()
            endpoint = f"http://{host}:{port}"
            config = load_stage("dev").model_copy(update={"name": STAGE, "mail_sender": SENDER})
            env = create_all(Container(Settings(stage=STAGE, aws_endpoint_url=endpoint)).aws, config, SENDER)
            yield {
                **config.runtime_environment(),
                **env,
                "DOCUCHAT_AWS_ENDPOINT_URL": endpoint,
                "DOCUCHAT_RETRIEVAL_TOP_K": str(TOP_K),
                "DOCUCHAT_METERING_CONCURRENCY": "1",
            }
        finally:
            server.stop()


def container_for(embedder: str, env: dict[str, str], fake_openai_url: str = "") -> Container | None:
    """The service's container for one embedder, or None when it cannot run here."""
    values = dict(env)
    if embedder == "fake-openai":  # the OpenAI path end to end, against the local OpenAI-compatible server
        values.update({"OPENAI_API_KEY": "sk-quality", "OPENAI_BASE_URL": fake_openai_url})
        values["DOCUCHAT_EMBEDDER"] = "openai"
    elif embedder == "openai":
        if not os.environ.get("OPENAI_API_KEY"):
            return None
        values.update(
            {
                name: os.environ[name]
                for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "EMBEDDING_MODEL")
                if name in os.environ
            }
        )
        values["DOCUCHAT_EMBEDDER"] = "openai"
    else:
        values["DOCUCHAT_EMBEDDER"] = "local"
    with fake_aws_credentials({**values, "OPENAI_API_KEY": values.get("OPENAI_API_KEY", "")}):
        container = Container(Settings())
    if embedder == "keyword-only":
        container.embedder = KeywordOnly()
    return container


def ingest_corpus(container: Container, principal: Principal) -> dict[str, str]:
    """Every corpus file as a ready document; returns document id -> file name."""
    names: dict[str, str] = {}
    for path in sorted((QUALITY_DIR / "corpus").glob("*.md")):
        title = path.stem.replace("-", " ").capitalize()
        document = container.document_service.create_inline(principal, title, path.read_text(), "text/markdown")
        outcome = container.ingestion.ingest(Upload(document.source_key, "quality"), time_left=lambda: 900.0)
        if outcome != IngestOutcome.READY:
            raise RuntimeError(f"{path.name} ended {outcome.value}")
        names[document.document_id] = path.name
    return names


def evaluate(container: Container, questions: list[Question]) -> dict[str, Any]:
    tenant = Tenant(tenant_id=new_id("t"), name="Quality", email="ops@quality.test", created_at=utc_now())
    container.tenants.create(tenant)
    principal = Principal(tenant_id=tenant.tenant_id, key_id="kquality0")
    started = time.perf_counter()
    names = ingest_corpus(container, principal)
    ingest_seconds = time.perf_counter() - started
    rows: list[Answered] = []
    started = time.perf_counter()
    for question in questions:
        conversation = None
        for earlier in question.history:  # a follow-up: its conversation first
            asked = container.chat.chat(principal, new_id("r"), earlier, conversation, use_documents=True)
            conversation = asked.conversation_id
        result = container.chat.chat(principal, new_id("r"), question.question, conversation, use_documents=True)
        cited = [names[c.document_id] for c in result.citations]
        rows.append(Answered(question, list(dict.fromkeys(cited)), result.route))  # documents by first citation
    ask_seconds = time.perf_counter() - started
    answerable = [r for r in rows if r.question.expected]
    unanswerable = [r for r in rows if not r.question.expected]

    def hit(row: Answered, k: int) -> bool:
        return any(name in row.question.expected for name in row.ranked[:k])

    def share(items: list[Answered], test: Callable[[Answered], bool]) -> float:
        return round(sum(1 for r in items if test(r)) / len(items), 3) if items else 0.0

    by_style = {}
    for style in sorted({r.question.style for r in answerable}):
        subset = [r for r in answerable if r.question.style == style]
        by_style[style] = {
            "questions": len(subset),
            "hit_at_1": share(subset, lambda r: hit(r, 1)),
            "hit_at_5": share(subset, lambda r: hit(r, 5)),
        }
    return {
        "embedding_model": container.embedder.model,
        "documents": len(names),
        "questions": len(answerable),
        "unanswerable_questions": len(unanswerable),
        "hit_at_1": share(answerable, lambda r: hit(r, 1)),
        "hit_at_5": share(answerable, lambda r: hit(r, 5)),
        "answered": share(answerable, lambda r: bool(r.ranked)),
        "said_unknown": {
            style: share([r for r in unanswerable if r.question.style == style], lambda r: r.route == "not_found")
            for style in sorted({r.question.style for r in unanswerable})
        },
        "by_style": by_style,
        "misses_at_5": [
            {"id": r.question.id, "question": r.question.question, "got": r.ranked[:TOP_K]}
            for r in answerable
            if not hit(r, 5)
        ],
        "unknown_missed": [r.question.id for r in unanswerable if r.route != "not_found"],
        "ingest_seconds": round(ingest_seconds, 2),
        "ask_ms_per_question": round(1000 * ask_seconds / len(rows), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--embedders", nargs="+", default=["local", "keyword-only", "fake-openai", "openai"])
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    questions = load_questions()
    report: dict[str, Any] = {
        "benchmark": "rag_quality",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "top_k": TOP_K,
        "goal": {"hit_at_5": 0.93},
        "results": {},
        "skipped": {},
    }
    with emulated_aws() as env, FakeOpenAI() as fake_openai:
        for embedder in args.embedders:
            container = container_for(embedder, env, fake_openai.base_url)
            if container is None:
                report["skipped"][embedder] = "OPENAI_API_KEY is not set"
                print(f"[quality] {embedder}: skipped (OPENAI_API_KEY is not set)", file=sys.stderr)
                continue
            print(f"[quality] {embedder}: ingesting the corpus and asking {len(questions)} questions", file=sys.stderr)
            result = evaluate(container, questions)
            report["results"][embedder] = result
            print(
                f"[quality] {embedder}: hit@1 {result['hit_at_1']}, hit@5 {result['hit_at_5']}, "
                f"said it does not know {result['said_unknown']}",
                file=sys.stderr,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"[quality] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
