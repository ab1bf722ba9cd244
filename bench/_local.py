"""What the benchmarks that drive `python -m local` over HTTP share: a tenant, its key, its documents."""

from __future__ import annotations

import time

import httpx

from local.process import add_text_document, new_tenant, wait_until_ready


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
    ids = [add_text_document(url, key, title, text) for title, text in documents.items()]
    deadline = time.monotonic() + timeout
    for document_id in ids:  # all are ingesting already; one deadline for the lot
        wait_until_ready(url, key, document_id, timeout=max(0.0, deadline - time.monotonic()))
    return str(key)
