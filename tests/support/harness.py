"""Drives the real Lambda handlers in-process with real event shapes, as AWS would invoke them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from functions.billing import handler as billing_handler
from functions.chat import handler as chat_handler
from functions.ingestion import handler as ingestion_handler
from functions.metering import handler as metering_handler
from functions.webhooks import handler as webhooks_handler
from local.lambda_runtime import LocalLambdaContext, http_api_event
from local.workers import QueuePoller
from shared import resources
from shared.container import Container

ADMIN_KEY = "dca_test-admin-key-0123456789"


class Response:
    def __init__(self, raw: dict[str, Any]) -> None:
        self.status = int(raw["statusCode"])
        self.headers = raw.get("headers", {})
        body = raw.get("body") or ""
        self.json: Any = json.loads(body) if body and "json" in self.headers.get("content-type", "") else None
        self.text = body

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.text[:300]}>"


class Harness:
    def __init__(self, container: Container, env: dict[str, str]) -> None:
        self.container = container
        self.env = env
        for module in (chat_handler, ingestion_handler, metering_handler, billing_handler, webhooks_handler):
            module.configure(container)
        self._consumers = {
            "ingestion": ingestion_handler.handler,
            "metering": metering_handler.handler,
            "webhooks": webhooks_handler.handler,
        }

    # HTTP API -> chat function
    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        key: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        raw_body: str | bytes | None = None,
        request_id: str | None = None,
    ) -> Response:
        headers = dict(headers or {})
        if key:
            headers["authorization"] = f"Bearer {key}"
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event = http_api_event(method, path, payload, headers, query, request_id=request_id)
        return Response(chat_handler.handler(event, LocalLambdaContext("chat")))

    def admin(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None) -> Response:
        return self.call(method, path, body, key=ADMIN_KEY, query=query)

    # Tenants
    def new_tenant(self, name: str = "Acme", email: str = "ops@acme.test") -> tuple[str, str]:
        """Creates a tenant and a key; returns (tenant id, api key)."""
        tenant = self.admin("POST", "/v1/admin/tenants", {"name": name, "email": email})
        assert tenant.status == 201, tenant
        tenant_id = tenant.json["tenant"]["tenant_id"]
        key = self.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", {"name": "default"})
        assert key.status == 201, key
        return tenant_id, key.json["api_key"]

    # SQS -> consumers, like the event source mappings
    def drain(self, queue_id: str, rounds: int = 20) -> int:
        """Deliver every message on a queue to its consumer; returns how many succeeded."""
        spec = resources.queue_by_id(queue_id)
        poller = QueuePoller(
            self.container.aws.sqs,
            self.env[spec.env_var],
            self._consumers[spec.consumer],
            spec.consumer,
            spec.batch_size,
            retry_seconds=0,  # a failed message is back at once, so tests see every redelivery
            timeout_seconds=300,
        )
        handled = 0
        for _ in range(rounds):
            done = poller.poll_once()
            handled += done
            if done == 0 and not self.queued(queue_id):
                break
        return handled

    def queued(self, queue_id: str) -> int:
        url = self.env[resources.queue_by_id(queue_id).env_var]
        attributes = self.container.aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"])

    def run_schedule(self) -> Any:
        # The input the EventBridge Scheduler target passes to the billing function (stacks/schedule.py).
        return billing_handler.handler(
            {"source": "docuchat.schedule"}, LocalLambdaContext("billing", timeout_seconds=300)
        )


# For tests of many threads writing at once: moto's transact_write_items copies the tables and puts the copy back
# when a transaction fails, which loses what other threads wrote meanwhile (docs/decisions/0006). Against moto
# such a test measures moto; DynamoDB Local is AWS's own implementation.
CONCURRENT_WRITERS = pytest.mark.parametrize(
    "any_harness", [pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)], indirect=True
)
