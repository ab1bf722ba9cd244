"""The local runtime over HTTP: `python -m local` (what `make dev` runs) as a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pytest

from local.process import LocalProcess, alive

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "dca_e2e-admin-key-0123456789"


def start(log: Path, data_dir: Path | None = None) -> LocalProcess:
    return LocalProcess(log, ADMIN_KEY, data_dir=data_dir).wait_until_up()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def runtime(tmp_path: Path, data_dir: Path) -> Iterator[LocalProcess]:
    process = start(tmp_path / "first.log", data_dir)
    yield process
    process.kill()


def eventually(check, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_the_whole_journey_over_http_then_a_restart_keeps_the_state(
    runtime: LocalProcess, data_dir: Path, tmp_path: Path
) -> None:
    api = httpx.Client(base_url=runtime.url, timeout=30)
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    banner = runtime.log.read_text()
    assert runtime.url in banner and ADMIN_KEY in banner  # prints the URL and the admin key

    # Readiness checks the dependencies and says answers are extractive without a key
    ready = api.get("/health/ready").json()
    assert ready["status"] == "ready" and "extractive" in ready["checks"]["llm"]
    assert api.get("/docs").status_code == 200

    # Create a tenant and a key
    tenant = api.post("/v1/admin/tenants", json={"name": "Acme", "email": "ops@acme.test"}, headers=admin)
    assert tenant.status_code == 201, tenant.text
    tenant_id = tenant.json()["tenant"]["tenant_id"]
    key = api.post(f"/v1/admin/tenants/{tenant_id}/keys", json={"name": "e2e"}, headers=admin).json()["api_key"]
    auth = {"Authorization": f"Bearer {key}"}

    # Add text; the ingestion worker makes it ready
    text = "The warranty covers manufacturing defects for 24 months. Water damage is not covered."
    document = api.post("/v1/documents", json={"title": "Warranty", "text": text}, headers=auth).json()
    ready_doc = eventually(
        lambda: api.get(f"/v1/documents/{document['document_id']}", headers=auth).json()["status"] == "ready"
    )
    assert ready_doc, api.get(f"/v1/documents/{document['document_id']}", headers=auth).text

    # Ask, and see the citation
    answer = api.post("/v1/chat", json={"message": "How long is the warranty?"}, headers=auth).json()
    assert "24 months" in answer["answer"]
    assert answer["citations"][0]["document_id"] == document["document_id"]
    assert answer["model"] == "docuchat-extractive"

    # See the usage, once the metering worker has folded the events: the answer's tokens, and the
    # embedding tokens of the document and of the question (the local embedder's)
    today = date.fromisoformat(answer_day := api.get("/v1/usage", headers=auth).json()["end"])

    def tokens_by_model() -> dict[str, int]:
        days = api.get("/v1/usage", headers=auth).json()["days"]
        return {day["model"]: day["total_tokens"] for day in days}

    embedded = answer["usage"]["embedding_tokens"]
    assert embedded > 0
    assert eventually(
        lambda: (
            tokens_by_model().get("docuchat-extractive") == answer["usage"]["total_tokens"]
            and tokens_by_model().get("docuchat-minilm-l6-v2", 0) > embedded
        )  # the document's, then the question's
    ), tokens_by_model()
    usage = api.get("/v1/usage", headers=auth).json()

    # Run billing for the day, and see the invoice
    run = api.post("/v1/admin/billing/run", json={"date": answer_day}, headers=admin)
    assert run.status_code == 200 and run.json()["invoices_created"] == 1, run.text
    invoices = api.get("/v1/invoices", headers=auth).json()["invoices"]
    assert len(invoices) == 1 and invoices[0]["invoice"]["period"] == today.isoformat()
    assert invoices[0]["invoice"]["total_tokens"] == usage["total_tokens"]

    # `make reconcile DATE=...` finds invoiced tokens equal to the metered ones
    check = subprocess.run(
        [sys.executable, "-m", "tools.reconcile", answer_day],
        cwd=ROOT,
        env={**os.environ, "DOCUCHAT_API_URL": runtime.url, "DOCUCHAT_ADMIN_KEY": ADMIN_KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "reconciled" in check.stdout and tenant_id in check.stdout

    # Ctrl-C stops everything cleanly, DynamoDB Local included, whose own files keep the tables
    assert runtime.children(), "DynamoDB Local runs as the runtime's child"
    assert runtime.interrupt() == 0
    assert "Stopped." in runtime.log.read_text()
    assert list((data_dir / "dynamodb").glob("*.db"))

    # A restart with the same DOCUCHAT_DATA_DIR finds the tenant, its key, document and invoice again
    again = start(tmp_path / "second.log", data_dir)
    try:
        api2 = httpx.Client(base_url=again.url, timeout=30)
        assert api2.get(f"/v1/documents/{document['document_id']}", headers=auth).json()["status"] == "ready"
        assert len(api2.get("/v1/invoices", headers=auth).json()["invoices"]) == 1
        assert "24 months" in api2.post("/v1/chat", json={"message": "warranty length?"}, headers=auth).json()["answer"]
        assert again.interrupt() == 0
    finally:
        again.kill()


def test_a_dead_database_makes_readiness_and_the_api_say_503_and_ctrl_c_still_stops(tmp_path: Path) -> None:
    runtime = start(tmp_path / "run.log")
    try:
        api = httpx.Client(base_url=runtime.url, timeout=30)
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        assert api.get("/health/ready").status_code == 200
        # Given DynamoDB Local dies under the running system
        [dynamodb] = runtime.children()
        os.kill(dynamodb, signal.SIGKILL)
        assert eventually(lambda: not alive(dynamodb), timeout=10)

        # Then readiness says which dependency failed, and the API answers 503 with Retry-After, not a hang
        ready = api.get("/health/ready")
        assert ready.status_code == 503 and ready.json()["checks"]["dynamodb"].startswith("failed"), ready.text
        reply = api.get("/v1/admin/tenants", headers=admin)
        assert reply.status_code == 503 and reply.headers["retry-after"] == "1", reply.text
        assert reply.json()["error"]["code"] == "service_unavailable"

        # And Ctrl-C still stops what is left
        assert runtime.interrupt() == 0
    finally:
        runtime.kill()
