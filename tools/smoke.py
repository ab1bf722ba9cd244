"""A smoke test of a running DocuChat, deployed or local: readiness and one real chat round trip.

    python -m tools.smoke --stage staging                              # the URL from the stack's ApiUrl output
    python -m tools.smoke --url http://127.0.0.1:8000 --admin-key dca_...   # against `make dev`

It checks /health/ready, uploads a small text file through its upload URL, waits until ingestion makes it ready,
asks about it and checks that the answer cites it and holds the fact; then deletes the document.

Keys (arguments, or from the environment):
  DOCUCHAT_SMOKE_TENANT_KEY  a standing smoke tenant's key (used when given): nothing else is created
  DOCUCHAT_ADMIN_KEY         otherwise: a throwaway tenant is created (limits lifted, priced at zero), given a key,
                             and afterwards its key revoked and the tenant suspended (the admin API deletes no tenant)
Exits 0 when every check passed, 1 when one failed, 2 when it could not start.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

SERVICE_STACK = "DocuChat-{stage}-Service"  # stacks/docuchat.py's stack_name(stage, "Service")
API_URL_OUTPUT = "ApiUrl"  # the Service stack's output with the API's base URL (stacks/api.py)
UNLIMITED = {"requests_per_minute": None, "requests_per_hour": None, "monthly_token_budget": None}
FREE = {"default": {"input": 0, "output": 0}}  # its usage is billed as nothing due


class SmokeFailure(Exception):
    """A check that did not hold."""


@dataclass
class Tenant:
    key: str
    tenant_id: str | None = None  # set when the smoke test created it (and so must retire it)
    key_id: str | None = None


def api_url_of_stage(stage: str, cloudformation: Any = None) -> str:
    """The API's base URL from the stage's Service stack outputs (AWS credentials from the environment)."""
    if cloudformation is None:
        import boto3

        cloudformation = boto3.client("cloudformation")
    stack_name = SERVICE_STACK.format(stage=stage)
    [stack] = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    for output in stack.get("Outputs", []):
        if output["OutputKey"] == API_URL_OUTPUT:
            return str(output["OutputValue"]).rstrip("/")
    raise SmokeFailure(f"{stack_name} has no {API_URL_OUTPUT} output")


class Smoke:
    """The checks, in order; each prints one line as it passes."""

    def __init__(self, client: httpx.Client, wait_seconds: float, log: Callable[[str], None] = print) -> None:
        self.client = client
        self.wait_seconds = wait_seconds
        self.log = log

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        yield
        self.log(f"ok  {name} ({time.monotonic() - started:.1f} s)")

    def call(self, method: str, path: str, key: str, expect: int, **kwargs: Any) -> Any:
        """One API call that must answer `expect`; a 429 is waited out (a standing tenant keeps its limits)."""
        deadline = time.monotonic() + self.wait_seconds
        while True:
            reply = self.client.request(method, path, headers={"Authorization": f"Bearer {key}"}, **kwargs)
            if reply.status_code != 429 or time.monotonic() > deadline:
                break
            time.sleep(float(reply.headers.get("retry-after", "1")))
        if reply.status_code != expect:
            raise SmokeFailure(f"{method} {path} answered {reply.status_code}, not {expect}: {reply.text[:500]}")
        return reply.json() if reply.content else None

    def run(self, tenant_key: str | None, admin_key: str | None, email: str) -> None:
        with self.step("GET /health/ready"):
            ready = self.client.get("/health/ready")
            if ready.status_code != 200 or ready.json().get("status") != "ready":
                raise SmokeFailure(f"not ready: {ready.status_code} {ready.text[:500]}")
        tenant = Tenant(key=tenant_key) if tenant_key else self.create_tenant(admin_key or "", email)
        try:
            self.round_trip(tenant.key)
        finally:
            if tenant.tenant_id:
                self.retire_tenant(tenant, admin_key or "")

    def create_tenant(self, admin_key: str, email: str) -> Tenant:
        with self.step("a throwaway tenant and its key"):
            body = {"name": f"smoke {time.strftime('%Y-%m-%d %H:%M:%S')}", "email": email}
            tenant_id = self.call("POST", "/v1/admin/tenants", admin_key, 201, json=body)["tenant"]["tenant_id"]
            changes = {"limits": UNLIMITED, "prices": FREE}
            self.call("PATCH", f"/v1/admin/tenants/{tenant_id}", admin_key, 200, json=changes)
            key = self.call("POST", f"/v1/admin/tenants/{tenant_id}/keys", admin_key, 201, json={"name": "smoke"})
        return Tenant(key=key["api_key"], tenant_id=tenant_id, key_id=key["key_id"])

    def round_trip(self, key: str) -> None:
        code_word = f"smoke-{secrets.token_hex(4)}"
        text = f"DocuChat smoke check.\nThe code word of this smoke check is {code_word}.\n".encode()
        with self.step("upload a text file to its upload URL"):
            body = {"title": f"Smoke check {code_word}", "size_bytes": len(text), "content_type": "text/plain"}
            document = self.call("POST", "/v1/documents", key, 202, json=body)
            upload = document["upload"]
            sent = httpx.request(upload["method"], upload["url"], headers=upload["headers"], content=text, timeout=60)
            if sent.status_code not in (200, 204):
                raise SmokeFailure(f"the upload answered {sent.status_code}: {sent.text[:500]}")
        document_id = document["document_id"]
        try:
            with self.step("ingestion makes it ready"):
                self.wait_until_ready(key, document_id)
            with self.step("POST /v1/chat answers from it, citing it"):
                question = {"message": "What is the code word of the smoke check?"}
                answer = self.call("POST", "/v1/chat", key, 200, json=question)
                cited = {citation["document_id"] for citation in answer["citations"]}
                if document_id not in cited:
                    raise SmokeFailure(f"the answer does not cite the document: {answer}")
                if code_word not in answer["answer"]:
                    raise SmokeFailure(f"the answer lacks the code word {code_word}: {answer['answer']!r}")
        finally:
            with self.step("delete the document"):
                self.call("DELETE", f"/v1/documents/{document_id}", key, 204)

    def wait_until_ready(self, key: str, document_id: str) -> None:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            status = self.call("GET", f"/v1/documents/{document_id}", key, 200)
            if status["status"] == "ready":
                return
            if status["status"] == "failed":
                raise SmokeFailure(f"ingestion failed the document: {status.get('reason')}")
            if time.monotonic() > deadline:
                raise SmokeFailure(f"the document is still {status['status']} after {self.wait_seconds:.0f} s")
            time.sleep(1)

    def retire_tenant(self, tenant: Tenant, admin_key: str) -> None:
        with self.step("revoke the throwaway key and suspend its tenant"):
            self.call("DELETE", f"/v1/admin/tenants/{tenant.tenant_id}/keys/{tenant.key_id}", admin_key, 204)
            body = {"status": "suspended"}
            self.call("PATCH", f"/v1/admin/tenants/{tenant.tenant_id}", admin_key, 200, json=body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--url", help="the API's base URL, e.g. http://127.0.0.1:8000")
    where.add_argument("--stage", help="read the URL from the stage's stack outputs (needs AWS credentials)")
    parser.add_argument("--tenant-key", default=os.environ.get("DOCUCHAT_SMOKE_TENANT_KEY") or None)
    parser.add_argument("--admin-key", default=os.environ.get("DOCUCHAT_ADMIN_KEY") or None)
    parser.add_argument("--email", default="smoke@docuchat.example", help="the throwaway tenant's email")
    parser.add_argument("--wait", type=float, default=180, help="seconds to wait for ingestion (default 180)")
    args = parser.parse_args(argv)
    if not (args.tenant_key or args.admin_key):
        needed = "--tenant-key or --admin-key (or DOCUCHAT_SMOKE_TENANT_KEY / DOCUCHAT_ADMIN_KEY)"
        print(f"smoke: give {needed}", file=sys.stderr)
        return 2
    try:
        url = args.url.rstrip("/") if args.url else api_url_of_stage(args.stage)
    except Exception as error:  # no credentials, no such stack, no output: nothing to test yet
        print(f"smoke: cannot find the API of stage {args.stage}: {error}", file=sys.stderr)
        return 2
    print(f"smoke test of {url}")
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            Smoke(client, args.wait).run(args.tenant_key, args.admin_key, args.email)
    except (SmokeFailure, httpx.HTTPError) as failure:
        print(f"FAILED: {failure}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
