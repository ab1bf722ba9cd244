"""A tenant's webhook endpoint for tests: on loopback, keeping every delivery it was sent (fail_next makes it
answer 500s first)."""

from __future__ import annotations

import threading
from typing import Any

from local._http_fake import FakeRequest, FakeResponse, LoopbackFake


class WebhookReceiver(LoopbackFake):
    def __init__(self) -> None:
        super().__init__()
        self.received: list[FakeRequest] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.root_url}/hooks/docuchat"

    def record(self, request: FakeRequest) -> None:
        with self._lock:
            self.received.append(request)

    def handle(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(204)

    def events(self) -> list[Any]:
        return [request.json() for request in self.received]
