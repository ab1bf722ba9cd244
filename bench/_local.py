"""What the benchmarks that drive `python -m local` over HTTP share: a tenant, its key, its documents."""

from __future__ import annotations

import time

import httpx


def tenant_with_documents(url: str, admin_key: str, documents: dict[str, str], timeout: float = 300) -> str:
    """A new tenant with `documents` (title -> text) ingested; returns its API key."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    created = httpx.post(f"{url}/v1/admin/tenants", json={"name": "Bench", "email": "bench@x.test"}, headers=admin)
    created.raise_for_status()
    tenant_id = created.json()["tenant"]["tenant_id"]
    key = httpx.post(f"{url}/v1/admin/tenants/{tenant_id}/keys", json={}, headers=admin).json()["api_key"]
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
