"""`make load`: a bounded load test of the local system (`make dev`) on loopback, ending with the money check.

    python -m bench.load [--clients 16] [--seconds 90] [--max-requests 50000] [--tenants 4] [--documents 3]
                         [--single-client-seconds 20] [--url http://127.0.0.1:8000] [--out bench/results/load.json]

Without --url it starts its own `python -m local` (in memory, on a free loopback port) and stops it with
Ctrl-C's signal at the end, timing the stop. With --url it drives a running `make dev` (DOCUCHAT_ADMIN_KEY
must be its admin key); only loopback addresses are accepted.

1. Setup: tenants, each with a key and documents from bench/quality/sets/own/corpus, waited on until ready.
2. One client alone for --single-client-seconds: the throughput to beat.
3. --clients clients at once for --seconds (or --max-requests, whichever comes first), each choosing per
   request: a chat (60%), a document list (15%), a usage read (15%), or a deliberately bad request (10%:
   malformed JSON, an oversized body, an unknown id, a wrong key) that must get a 4xx and nothing else.
4. The money check: once metering has caught up, each tenant's metered chat tokens must equal the sum of
   the `usage` its chat replies reported (embedding tokens aside), and the billing run must invoice exactly
   the tokens metered (documents' embeddings included).

It writes p50/p95/p99 latency, throughput, errors by status, and the memory of the local processes (the
runtime and DynamoDB Local) to bench/results/load.json. Goals are in docs/decisions/0006; nothing here is
asserted by a timed test (tests/e2e/test_load.py runs it small and checks only errors and money).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import secrets
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from bench._report import write_report
from local.process import LocalProcess, children, new_tenant

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS_DIR = REPO_ROOT / "bench" / "quality" / "sets" / "own" / "corpus"
QUESTIONS_FILE = CORPUS_DIR.parent / "questions.json"
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "load.json"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
READY_SECONDS = 300
METERING_SECONDS = 120
WARMUP_SECONDS = 10
OVERSIZED_BYTES = 2_100_000  # above the API's 2 MB request limit
OPERATIONS = (("chat", 60), ("documents", 15), ("usage", 15), ("bad", 10))


@dataclass(frozen=True)
class LoadOptions:
    clients: int = 16
    seconds: float = 90.0
    max_requests: int = 50_000
    tenants: int = 4
    documents: int = 3
    single_client_seconds: float = 20.0
    url: str | None = None
    admin_key: str | None = None
    seed: int = 20261201
    out: Path | None = RESULTS_FILE


@dataclass
class Tenant:
    tenant_id: str
    api_key: str
    questions: list[str]
    document_ids: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reported_chat_tokens: int = 0  # the sum of input + output tokens its chat replies reported
    reported_embedding_tokens: int = 0
    chats: int = 0
    chat_models: set[str] = field(default_factory=set)  # the models that answered, as the replies name them


@dataclass
class Outcome:
    operation: str
    status: int  # 0: the connection failed (refused, reset, timed out)
    seconds: float


@dataclass
class Phase:
    clients: int
    outcomes: list[Outcome] = field(default_factory=list)
    elapsed: float = 0.0

    def summary(self) -> dict[str, Any]:
        latencies = sorted(o.seconds * 1000 for o in self.outcomes if o.status)
        unexpected = [o for o in self.outcomes if not _expected(o)]
        by_status = Counter(str(o.status) if o.status else "dropped" for o in unexpected)
        by_operation: dict[str, Any] = {}
        for operation, _ in OPERATIONS:
            own = sorted(o.seconds * 1000 for o in self.outcomes if o.operation == operation and o.status)
            by_operation[operation] = {
                "requests": len(own),
                "p50_ms": _percentile(own, 50),
                "p99_ms": _percentile(own, 99),
            }
        return {
            "concurrency": self.clients,
            "requests": len(self.outcomes),
            "seconds": round(self.elapsed, 2),
            "throughput_rps": round(len(self.outcomes) / self.elapsed, 2) if self.elapsed else 0.0,
            "errors": len(unexpected),
            "errors_by_status": dict(sorted(by_status.items())),
            "server_errors": sum(1 for o in self.outcomes if o.status >= 500),
            "dropped_connections": sum(1 for o in self.outcomes if o.status == 0),
            "p50_ms": _percentile(latencies, 50),
            "p95_ms": _percentile(latencies, 95),
            "p99_ms": _percentile(latencies, 99),
            "by_operation": by_operation,
        }


def _expected(outcome: Outcome) -> bool:
    """A bad request must get a 4xx; everything else a 2xx."""
    if outcome.operation == "bad":
        return 400 <= outcome.status < 500
    return 200 <= outcome.status < 300


def _percentile(sorted_values: list[float], percent: float) -> float | None:
    if not sorted_values:
        return None
    rank = min(len(sorted_values) - 1, max(0, round(percent / 100 * len(sorted_values) + 0.5) - 1))
    return round(sorted_values[rank], 2)


# --- the system under load -----------------------------------------------------------------------------------------


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class MemorySampler(threading.Thread):
    """The resident memory of a process and its children (DynamoDB Local), once a second."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self._pid = pid
        self._stop = threading.Event()
        self.samples: list[tuple[float, float]] = []  # (monotonic time, MB)

    def now_mb(self) -> float:
        return _rss_mb(self._pid) + sum(_rss_mb(child) for child in children(self._pid))

    def run(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.monotonic(), self.now_mb()))

    def stop(self) -> None:
        self._stop.set()

    def peak_between(self, start: float, end: float) -> float:
        inside = [mb for at, mb in self.samples if start <= at <= end]
        return max(inside) if inside else 0.0


# --- setup ---------------------------------------------------------------------------------------------------------


def _corpus() -> list[tuple[str, str, list[str]]]:
    """(title, text, questions) of each evaluation document."""
    questions: dict[str, list[str]] = defaultdict(list)
    for question in json.loads(QUESTIONS_FILE.read_text()):
        for expected in question["expected"]:
            questions[expected].append(question["question"])
    return [
        (path.stem.replace("-", " ").title(), path.read_text(), questions[path.name] or ["What does this cover?"])
        for path in sorted(CORPUS_DIR.glob("*.md"))
    ]


def set_up_tenants(api: httpx.Client, admin_key: str, options: LoadOptions) -> list[Tenant]:
    corpus = _corpus()
    tenants = []
    for number in range(options.tenants):
        tenant_id, key = new_tenant(
            str(api.base_url).rstrip("/"), admin_key, f"Load {number}", f"load{number}@bench.test"
        )
        tenant = Tenant(tenant_id=tenant_id, api_key=key, questions=[])
        for offset in range(options.documents):
            title, text, questions = corpus[(number * options.documents + offset) % len(corpus)]
            document = api.post("/v1/documents", json={"title": title, "text": text}, headers=_auth(tenant))
            document.raise_for_status()
            tenant.document_ids.append(document.json()["document_id"])
            tenant.questions += questions
        tenants.append(tenant)
    _wait_for_documents(api, tenants)
    return tenants


def _wait_for_documents(api: httpx.Client, tenants: list[Tenant]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    for tenant in tenants:
        for document_id in tenant.document_ids:
            while True:
                status = api.get(f"/v1/documents/{document_id}", headers=_auth(tenant)).json()["status"]
                if status == "ready":
                    break
                if status == "failed" or time.monotonic() > deadline:
                    raise RuntimeError(f"document {document_id} of {tenant.tenant_id} is {status}, not ready")
                time.sleep(0.5)


def _auth(tenant: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.api_key}"}


# --- the load ------------------------------------------------------------------------------------------------------


class Client:
    """One simulated user: a connection of its own, choosing an operation per request."""

    def __init__(self, url: str, tenants: list[Tenant], seed: int) -> None:
        self._api = httpx.Client(base_url=url, timeout=httpx.Timeout(60.0, connect=10.0))
        self._tenants = tenants
        self._random = random.Random(seed)
        self._names = [name for name, _ in OPERATIONS]
        self._weights = [weight for _, weight in OPERATIONS]

    def close(self) -> None:
        self._api.close()

    def one(self) -> Outcome:
        tenant = self._random.choice(self._tenants)
        operation = self._random.choices(self._names, self._weights)[0]
        began = time.perf_counter()
        try:
            status = getattr(self, f"_{operation}")(tenant)
        except httpx.TransportError:
            status = 0
        return Outcome(operation, status, time.perf_counter() - began)

    def _chat(self, tenant: Tenant) -> int:
        question = self._random.choice(tenant.questions)
        reply = self._api.post("/v1/chat", json={"message": question}, headers=_auth(tenant))
        if reply.status_code == 200:
            usage = reply.json()["usage"]
            with tenant.lock:
                tenant.reported_chat_tokens += usage["input_tokens"] + usage["output_tokens"]
                tenant.reported_embedding_tokens += usage.get("embedding_tokens", 0)
                tenant.chats += 1
                tenant.chat_models.add(reply.json()["model"])
        return reply.status_code

    def _documents(self, tenant: Tenant) -> int:
        return self._api.get("/v1/documents", params={"limit": 20}, headers=_auth(tenant)).status_code

    def _usage(self, tenant: Tenant) -> int:
        return self._api.get("/v1/usage", headers=_auth(tenant)).status_code

    def _bad(self, tenant: Tenant) -> int:
        """Malformed JSON, an oversized body, an unknown id, or a wrong key: each must be a 4xx."""
        kind = self._random.randrange(4)
        headers = {**_auth(tenant), "content-type": "application/json"}
        if kind == 0:
            return self._api.post("/v1/chat", content=b'{"message": "unterminated', headers=headers).status_code
        if kind == 1:
            body = b'{"title": "big", "text": "' + b"x" * OVERSIZED_BYTES + b'"}'
            return self._api.post("/v1/documents", content=body, headers=headers).status_code
        if kind == 2:
            return self._api.get(f"/v1/documents/d{secrets.token_hex(8)}", headers=_auth(tenant)).status_code
        wrong = {"Authorization": f"Bearer dc_{tenant.tenant_id}_k0123456789abcdef_{secrets.token_urlsafe(32)}"}
        return self._api.get("/v1/documents", headers=wrong).status_code


def run_phase(url: str, tenants: list[Tenant], clients: int, seconds: float, max_requests: int, seed: int) -> Phase:
    phase = Phase(clients=clients)
    deadline = time.monotonic() + seconds
    budget = threading.Semaphore(max_requests)
    lock = threading.Lock()

    def work(number: int) -> None:
        client = Client(url, tenants, seed + number)
        try:
            while time.monotonic() < deadline and budget.acquire(blocking=False):
                outcome = client.one()
                with lock:
                    phase.outcomes.append(outcome)
        finally:
            client.close()

    began = time.monotonic()
    threads = [threading.Thread(target=work, args=(n,), name=f"client-{n}") for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    phase.elapsed = time.monotonic() - began
    return phase


# --- the money check -------------------------------------------------------------------------------------------------


def money_check(api: httpx.Client, admin_key: str, tenants: list[Tenant]) -> dict[str, Any]:
    """Metered chat tokens == what the replies reported, per tenant; then invoiced tokens == metered tokens."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    deadline = time.monotonic() + METERING_SECONDS
    while True:  # metering runs behind the replies: wait until it has caught up, or give up
        usage = {t.tenant_id: _usage_days(api, t) for t in tenants}
        metered_chat = {t.tenant_id: _chat_tokens(usage[t.tenant_id], t.chat_models) for t in tenants}
        if all(metered_chat[t.tenant_id] >= t.reported_chat_tokens for t in tenants) or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    time.sleep(2.0)  # anything still in flight would show as an overcount below
    usage = {t.tenant_id: _usage_days(api, t) for t in tenants}
    days = sorted({day["day"] for days in usage.values() for day in days})
    for day in days:
        api.post("/v1/admin/billing/run", json={"date": day}, headers=admin, timeout=300).raise_for_status()
    rows = []
    for tenant in tenants:
        metered_total = sum(day["total_tokens"] for day in usage[tenant.tenant_id])
        invoices = api.get("/v1/invoices", headers=_auth(tenant), params={"limit": 100}).json()["invoices"]
        invoiced = sum(i["invoice"]["total_tokens"] for i in invoices if i["invoice"]["period"] in days)
        rows.append(
            {
                "tenant_id": tenant.tenant_id,
                "chats": tenant.chats,
                "reported_chat_tokens": tenant.reported_chat_tokens,
                "metered_chat_tokens": _chat_tokens(usage[tenant.tenant_id], tenant.chat_models),
                "metered_total_tokens": metered_total,
                "invoiced_tokens": invoiced,
            }
        )
    reconciled = [
        api.get("/v1/admin/reconciliation", params={"date": day}, headers=admin).json().get("ok", False) for day in days
    ]
    ok = all(
        r["reported_chat_tokens"] == r["metered_chat_tokens"] and r["metered_total_tokens"] == r["invoiced_tokens"]
        for r in rows
    )
    return {"ok": ok and all(reconciled), "days": days, "reconciled": all(reconciled), "tenants": rows}


def _usage_days(api: httpx.Client, tenant: Tenant) -> list[dict[str, Any]]:
    reply = api.get("/v1/usage", headers=_auth(tenant))
    reply.raise_for_status()
    return list(reply.json()["days"])


def _chat_tokens(days: list[dict[str, Any]], chat_models: set[str]) -> int:
    """Tokens metered under the models that answered chats (the embedding model is another)."""
    return sum(day["input_tokens"] + day["output_tokens"] for day in days if day["model"] in chat_models)


# --- putting it together --------------------------------------------------------------------------------------------


@contextmanager
def system_under_load(options: LoadOptions, log_dir: Path) -> Iterator[tuple[str, str, LocalProcess | None]]:
    if options.url:
        host = urlparse(options.url).hostname or ""
        if host not in LOOPBACK_HOSTS:
            raise SystemExit(f"refusing to load {options.url}: the load test drives loopback addresses only")
        if not options.admin_key:
            raise SystemExit("--url needs the running system's admin key in DOCUCHAT_ADMIN_KEY")
        yield options.url, options.admin_key, None
        return
    runtime = LocalProcess(log_dir / "local-runtime.log", "dca_load_" + secrets.token_urlsafe(18))
    try:
        runtime.wait_until_up("/health/ready")
        yield runtime.url, runtime.admin_key, runtime
    finally:
        try:
            runtime.interrupt()
        finally:
            runtime.kill()


def run(options: LoadOptions, progress: Callable[[str], None] = print, log_dir: Path | None = None) -> dict[str, Any]:
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    result: dict[str, Any] = {"benchmark": "load", "started_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with system_under_load(options, log_dir) as (url, admin_key, runtime):
        api = httpx.Client(base_url=url, timeout=60)
        progress(f"setting up {options.tenants} tenants with {options.documents} documents each on {url} ...")
        tenants = set_up_tenants(api, admin_key, options)
        sampler = MemorySampler(runtime.process.pid) if runtime else None
        if sampler:
            sampler.start()
        if options.single_client_seconds > 0:
            progress(f"1 client for {options.single_client_seconds:.0f} s ...")
            single = run_phase(url, tenants, 1, options.single_client_seconds, options.max_requests, options.seed)
            result["single_client"] = single.summary()
        progress(f"{options.clients} clients for {options.seconds:.0f} s (at most {options.max_requests} requests) ...")
        began = time.monotonic()
        memory_before = sampler.now_mb() if sampler else None
        load = run_phase(url, tenants, options.clients, options.seconds, options.max_requests, options.seed + 1000)
        ended = time.monotonic()
        result |= load.summary()
        if sampler:
            sampler.stop()
            warm = began + min(WARMUP_SECONDS, options.seconds / 3)
            after_warmup = next((mb for at, mb in sampler.samples if at >= warm), memory_before or 0.0)
            result["memory_mb"] = {
                "processes": "the local runtime and its children (DynamoDB Local)",
                "before_load": round(memory_before or 0.0, 1),
                "after_warmup": round(after_warmup, 1),
                "peak": round(sampler.peak_between(began, ended), 1),
                "end": round(sampler.now_mb(), 1),
                "growth_after_warmup": round(max(0.0, sampler.peak_between(warm, ended) - after_warmup), 1),
            }
        progress("money check ...")
        result["money_check"] = money_check(api, admin_key, tenants)
        api.close()
    if runtime:
        result["stop_seconds"] = runtime.stop_seconds
    result["options"] = {
        "clients": options.clients,
        "seconds": options.seconds,
        "max_requests": options.max_requests,
        "tenants": options.tenants,
        "documents_per_tenant": options.documents,
        "single_client_seconds": options.single_client_seconds,
        "mix": dict(OPERATIONS),
    }
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    if "single_client" in result and result["single_client"]["throughput_rps"]:
        result["throughput_vs_single_client"] = round(
            result["throughput_rps"] / result["single_client"]["throughput_rps"], 2
        )
    if options.out:
        write_report(options.out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=90.0)
    parser.add_argument("--max-requests", type=int, default=50_000)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--documents", type=int, default=3, help="documents per tenant")
    parser.add_argument("--single-client-seconds", type=float, default=20.0)
    parser.add_argument("--url", help="a running make dev on loopback (default: start one)")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    if not 1 <= args.clients <= 256 or args.seconds <= 0 or args.seconds > 3600 or args.max_requests < 1:
        parser.error("--clients must be 1..256, --seconds 0..3600, --max-requests at least 1")
    options = LoadOptions(
        clients=args.clients,
        seconds=args.seconds,
        max_requests=args.max_requests,
        tenants=args.tenants,
        documents=args.documents,
        single_client_seconds=args.single_client_seconds,
        url=args.url,
        admin_key=os.environ.get("DOCUCHAT_ADMIN_KEY"),
        out=args.out,
    )
    result = run(options)
    print(json.dumps({k: v for k, v in result.items() if k not in ("money_check",)}, indent=2))
    money = result["money_check"]
    verdict = "exact" if money["ok"] else "MISMATCH"
    print(f"money check: {verdict} over {len(money['tenants'])} tenants, days {money['days']}")
    sys.exit(0 if money["ok"] and result["server_errors"] == 0 and result["dropped_connections"] == 0 else 1)


if __name__ == "__main__":
    main()
