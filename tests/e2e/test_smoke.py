"""tools/smoke.py, the deploy pipeline's smoke test, run against the local runtime as a developer runs it."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.process import LocalProcess, new_tenant

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "dca_e2e-smoke-admin-key-0123456789"


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    with LocalProcess(tmp_path_factory.mktemp("smoke") / "run.log", ADMIN_KEY) as process:
        yield process


def smoke(*args: str) -> subprocess.CompletedProcess[str]:
    # A clean environment for the keys, so only the arguments decide which one is used.
    return subprocess.run(
        [sys.executable, "-m", "tools.smoke", *args],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "HOME": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def tenants(runtime: LocalProcess) -> list[dict[str, object]]:
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    return list(httpx.get(f"{runtime.url}/v1/admin/tenants", headers=admin, timeout=30).json()["tenants"])


def test_with_the_admin_key_it_passes_and_leaves_its_tenant_suspended(runtime: LocalProcess) -> None:
    # When the smoke test runs with the admin key alone
    run = smoke("--url", runtime.url, "--admin-key", ADMIN_KEY)
    # Then every check passed, in order
    assert run.returncode == 0, run.stdout + run.stderr
    checks = [line.split(" (")[0] for line in run.stdout.splitlines() if line.startswith("ok  ")]
    assert checks == [
        "ok  GET /health/ready",
        "ok  a throwaway tenant and its key",
        "ok  upload a text file to its upload URL",
        "ok  ingestion makes it ready",
        "ok  POST /v1/chat answers from it, citing it",
        "ok  delete the document",
        "ok  revoke the throwaway key and suspend its tenant",
    ]
    # And the tenant it made is suspended and priced at nothing (its usage is never charged)
    [made] = [t for t in tenants(runtime) if str(t["name"]).startswith("smoke ")]
    assert made["status"] == "suspended"
    assert made["prices"] == {"default": {"input": 0, "output": 0}}


def test_with_a_tenant_key_it_uses_that_tenant_and_deletes_its_document(runtime: LocalProcess) -> None:
    # Given a standing smoke tenant
    _, key = new_tenant(runtime.url, ADMIN_KEY, "Smoke standing", "ops@smoke.test")
    before = len(tenants(runtime))
    # When the smoke test runs with its key
    run = smoke("--url", runtime.url, "--tenant-key", key)
    # Then it passes without creating a tenant, and the tenant keeps no document
    assert run.returncode == 0, run.stdout + run.stderr
    assert "throwaway" not in run.stdout
    assert len(tenants(runtime)) == before
    documents = httpx.get(f"{runtime.url}/v1/documents", headers={"Authorization": f"Bearer {key}"}, timeout=30)
    assert documents.json()["documents"] == []


def test_a_wrong_key_fails_the_smoke_test_with_the_reason(runtime: LocalProcess) -> None:
    run = smoke("--url", runtime.url, "--admin-key", "dca_not-the-admin-key")
    assert run.returncode == 1
    assert "ok  GET /health/ready" in run.stdout
    assert "FAILED: POST /v1/admin/tenants answered 401" in run.stderr, run.stderr


def test_without_a_key_it_says_what_it_needs() -> None:
    run = smoke("--url", "http://127.0.0.1:9")
    assert run.returncode == 2 and "--admin-key" in run.stderr
