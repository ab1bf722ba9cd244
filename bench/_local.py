"""What the benchmarks that drive `python -m local` over HTTP share: a tenant, its key, its documents."""

from __future__ import annotations

import time

import httpx

from local.process import new_tenant


def tenant_with_documents(
    url: str,
    admin_key: str,
    documents: dict[str, str],
    timeout: float = 300,
    limits: dict[str, int | None] | None = None,
) -> str:
    """A new tenant with `documents` (title -> text) ingested; returns its API key. Unlimited unless `limits`."""
    tenant_id, key = new_tenant(url, admin_key, "Bench", "bench@x.test")
    if limits is not None:
        admin = {"Authorization": f"Bearer {admin_key}"}
        httpx.patch(f"{url}/v1/admin/tenants/{tenant_id}", json={"limits": limits}, headers=admin).raise_for_status()
    auth = {"Authorization": f"Bearer {key}"}
    ids = [
        httpx.post(f"{url}/v1/documents", json={"title": title, "text": text}, headers=auth).json()["document_id"]
        for title, text in documents.items()
    ]
    deadline = time.monotonic() + timeout
    for document_id in ids:
        while httpx.get(f"{url}/v1/documents/{document_id}", headers=auth).json()["status"] != "ready":
            if time.monotonic() > deadline:
                raise RuntimeError(f"document {document_id} did not get ready")
            time.sleep(0.2)
    return str(key)
