"""Answer quality: does the reply cite the right documents, and does it say "I don't know" when none answers?

    python -m bench.quality [--sets own manpages packages] [--embedders local openai] [--out FILE]

Each evaluation set is a folder of bench/quality/sets/ with a corpus and hand-written questions (see
bench/quality/README.md). `packages` is held out: it is reported, never tuned on.

For each set and embedder, a fresh tenant gets every document through the service's own path
(DocumentService.create_inline, then IngestionService) on emulated AWS (moto's server, in this process). Each
question then goes through ChatService.chat as a tenant's request would, follow-ups in their conversation.

Per set it reports:
- hit@1: the share of answerable questions whose first citation is from an expected document;
- hit@cited: the share whose citations include an expected document (all of them, for questions that need
  two documents);
- said_unknown: the share of near-topic unanswerable questions answered "I don't know" (route not_found);
  `said_unknown_off_topic` the same for questions about nothing in the corpus; `refused` the share of
  answerable questions wrongly answered "I don't know";
- the same hit figures for two anchors measured in the same run on the same index: plain BM25 and plain
  dense search, each taken over its first five distinct documents (a follow-up's anchors get its history
  in front of it, the naive way to carry a conversation). Plain search never says "I don't know".

Embedders: `local` (the offline default, all-MiniLM-L6-v2 in-process); `openai` (OPENAI_API_KEY and
OPENAI_BASE_URL, EMBEDDING_MODEL from the environment; skipped without a key; its chat answers call the model
too); `keyword-only` (vectors off: BM25 alone) and `fake-openai` (the OpenAI path end to end against the
local OpenAI-compatible server, whose hashed-word embeddings measure the plumbing, not a model).
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

from bench._report import write_report
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
SETS_DIR = QUALITY_DIR / "sets"
HELD_OUT = "packages"  # reported, never tuned on
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "rag_quality.json"
STAGE = "quality"
SENDER = "billing@quality.docuchat.test"
ANCHOR_DOCUMENTS = 5  # the anchors are scored over this many distinct documents
ANCHOR_ROWS = 200  # rows asked of each plain search, enough to find five distinct documents
GOALS = {"hit_at_cited": 0.93, "hit_at_1": 0.80, "said_unknown": 0.8}
UNANSWERABLE = "unanswerable"  # near-topic questions that no document answers
OFF_TOPIC = "off-topic"
NEEDS_ALL = "two-documents"  # questions whose answer needs every expected document


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    expected: tuple[str, ...]
    style: str
    history: tuple[str, ...] = ()  # a follow-up's earlier questions, asked first in the same conversation


@dataclass(frozen=True)
class EvaluationSet:
    name: str
    folder: Path
    questions: list[Question]

    @property
    def held_out(self) -> bool:
        return self.name == HELD_OUT

    @property
    def documents(self) -> list[Path]:
        return sorted((self.folder / "corpus").glob("*.md"))


@dataclass(frozen=True)
class Ranked:
    """What one way of answering cited for a question: documents in order of their first citation."""

    question: Question
    documents: list[str]
    said_unknown: bool = False
    citations: int = 0


def available_sets() -> list[str]:
    return sorted(p.name for p in SETS_DIR.iterdir() if (p / "questions.json").is_file())


def load_set(name: str) -> EvaluationSet:
    folder = SETS_DIR / name
    raw = json.loads((folder / "questions.json").read_text())
    questions = [
        Question(q["id"], q["question"], tuple(q["expected"]), q["style"], tuple(q.get("history", ()))) for q in raw
    ]
    return EvaluationSet(name, folder, questions)


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


def new_principal(container: Container, name: str) -> Principal:
    tenant = Tenant(tenant_id=new_id("t"), name=name, email="ops@quality.test", created_at=utc_now())
    container.tenants.create(tenant)
    return Principal(tenant_id=tenant.tenant_id, key_id="kquality0")


def ingest_corpus(container: Container, principal: Principal, documents: list[Path]) -> dict[str, str]:
    """Every corpus file as a ready document; returns document id -> file name."""
    names: dict[str, str] = {}
    for number, path in enumerate(documents, 1):
        title = _title(path)
        document = container.document_service.create_inline(principal, title, path.read_text(), "text/markdown")
        outcome = container.ingestion.ingest(Upload(document.source_key, "quality"), time_left=lambda: 900.0)
        if outcome != IngestOutcome.READY:
            raise RuntimeError(f"{path.name} ended {outcome.value}")
        names[document.document_id] = path.name
        if number % 20 == 0:
            print(f"[quality]   {number}/{len(documents)} documents ready", file=sys.stderr)
    return names


def _title(path: Path) -> str:
    """The document's first `# ` heading, else its file name: the title a person would give it."""
    for line in path.read_text().splitlines()[:5]:
        if line.startswith("# "):
            return line[2:].strip()[:200]
    return path.stem.replace("-", " ").capitalize()


def ask_service(container: Container, principal: Principal, names: dict[str, str], question: Question) -> Ranked:
    conversation = None
    for earlier in question.history:  # a follow-up: its conversation first
        asked = container.chat.chat(principal, new_id("r"), earlier, conversation, use_documents=True)
        conversation = asked.conversation_id
    result = container.chat.chat(principal, new_id("r"), question.question, conversation, use_documents=True)
    cited = [names[c.document_id] for c in result.citations]
    return Ranked(question, list(dict.fromkeys(cited)), result.route == "not_found", len(result.citations))


def anchors(container: Container, principal: Principal, names: dict[str, str], question: Question) -> dict[str, Ranked]:
    """Plain BM25 and plain dense search on the tenant's own index, over their first five distinct documents."""
    text = " ".join((*question.history, question.question))
    index = container.vectors.index(principal.tenant_id)
    found = {"bm25": index.keyword_search(text, ANCHOR_ROWS)}
    vector = container.embedder.embed([text]).vectors[0]
    if vector.any():
        found["dense"] = index.vector_search(vector, ANCHOR_ROWS)
    return {
        name: Ranked(question, list(dict.fromkeys(names[h.document_id] for h in hits))[:ANCHOR_DOCUMENTS])
        for name, hits in found.items()
    }


def hit_first(row: Ranked) -> bool:
    return bool(row.documents) and row.documents[0] in row.question.expected


def hit_cited(row: Ranked) -> bool:
    wanted = [name in row.documents for name in row.question.expected]
    return all(wanted) if row.question.style == NEEDS_ALL else any(wanted)


def share(rows: list[Ranked], test: Callable[[Ranked], bool]) -> float | None:
    return round(sum(1 for r in rows if test(r)) / len(rows), 3) if rows else None


def score(rows: list[Ranked]) -> dict[str, Any]:
    answerable = [r for r in rows if r.question.expected]
    near_topic = [r for r in rows if r.question.style == UNANSWERABLE]
    off_topic = [r for r in rows if r.question.style == OFF_TOPIC]
    return {
        "hit_at_1": share(answerable, hit_first),
        "hit_at_cited": share(answerable, hit_cited),
        "said_unknown": share(near_topic, lambda r: r.said_unknown),
        "said_unknown_off_topic": share(off_topic, lambda r: r.said_unknown),
        "refused": share(answerable, lambda r: r.said_unknown),
        "distinct_documents_cited": round(float(np.mean([len(r.documents) for r in answerable])), 2)
        if answerable
        else None,
    }


def evaluate(container: Container, evaluation: EvaluationSet) -> dict[str, Any]:
    principal = new_principal(container, f"Quality {evaluation.name}")
    started = time.perf_counter()
    names = ingest_corpus(container, principal, evaluation.documents)
    ingest_seconds = time.perf_counter() - started
    service: list[Ranked] = []
    plain: dict[str, list[Ranked]] = {}
    started = time.perf_counter()
    for question in evaluation.questions:
        service.append(ask_service(container, principal, names, question))
    ask_seconds = time.perf_counter() - started
    for question in evaluation.questions:
        for name, row in anchors(container, principal, names, question).items():
            plain.setdefault(name, []).append(row)
    answerable = [r for r in service if r.question.expected]
    by_style = {}
    for style in sorted({r.question.style for r in service}):
        subset = [r for r in service if r.question.style == style]
        by_style[style] = {"questions": len(subset), **{k: v for k, v in score(subset).items() if v is not None}}
    return {
        "embedding_model": container.embedder.model,
        "documents": len(names),
        "questions": len(evaluation.questions),
        "answerable_questions": len(answerable),
        **score(service),
        "citations_per_answer": round(float(np.mean([r.citations for r in answerable])), 2) if answerable else None,
        "anchors": {
            name: {k: v for k, v in score(rows).items() if k in ("hit_at_1", "hit_at_cited")}
            for name, rows in plain.items()
        },
        "by_style": by_style,
        "misses": [
            {"id": r.question.id, "expected": list(r.question.expected), "cited": r.documents}
            for r in answerable
            if not hit_cited(r)
        ],
        "wrongly_refused": [r.question.id for r in answerable if r.said_unknown],
        "answered_unanswerable": [
            r.question.id for r in service if r.question.style == UNANSWERABLE and not r.said_unknown
        ],
        "ingest_seconds": round(ingest_seconds, 1),
        "ask_ms_per_question": round(1000 * ask_seconds / max(1, len(service)), 1),
    }


def summary(name: str, embedder: str, result: dict[str, Any]) -> str:
    anchor = ", ".join(f"{a} {v['hit_at_1']}/{v['hit_at_cited']}" for a, v in result["anchors"].items())
    return (
        f"[quality] {name}/{embedder}: hit@1 {result['hit_at_1']}, hit@cited {result['hit_at_cited']}, "
        f"said unknown {result['said_unknown']} (off-topic {result['said_unknown_off_topic']}), "
        f"refused {result['refused']}; anchors hit@1/hit@cited: {anchor}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=None, help=f"default: all of {SETS_DIR.relative_to(REPO_ROOT)}")
    parser.add_argument("--embedders", nargs="+", default=["local", "openai"])
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    names = args.sets or available_sets()
    unknown = sorted(set(names) - set(available_sets()))
    if unknown:
        parser.error(f"no evaluation set {', '.join(unknown)} (there are {', '.join(available_sets())})")
    sets = [load_set(name) for name in names]
    report: dict[str, Any] = {
        "benchmark": "rag_quality",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "held_out": HELD_OUT,
        "goal": GOALS,
        "anchor_documents": ANCHOR_DOCUMENTS,
        "results": {},
        "skipped": {},
    }
    # The held-out set first: it is the one to quote.
    sets.sort(key=lambda s: (not s.held_out, s.name))
    with emulated_aws() as env, FakeOpenAI() as fake_openai:
        for embedder in args.embedders:
            for evaluation in sets:
                container = container_for(embedder, env, fake_openai.base_url)
                if container is None:
                    report["skipped"][embedder] = "OPENAI_API_KEY is not set"
                    print(f"[quality] {embedder}: skipped (OPENAI_API_KEY is not set)", file=sys.stderr)
                    break
                print(
                    f"[quality] {evaluation.name}/{embedder}: ingesting {len(evaluation.documents)} documents, "
                    f"then asking {len(evaluation.questions)} questions",
                    file=sys.stderr,
                )
                result = evaluate(container, evaluation)
                report["results"].setdefault(evaluation.name, {})[embedder] = result
                print(summary(evaluation.name, embedder, result), file=sys.stderr)
    write_report(args.out, report)
    print(f"[quality] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
