"""The official OpenAI client, built in one place for the chat models and the embeddings."""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from shared.runtime import collector
from shared.settings import Settings


def openai_module() -> ModuleType:
    """`openai`, imported on first use, which keeps cold starts without a key fast. That first import builds ~650
    pydantic models: with the collector paused, then frozen (shared/runtime/collector.py)."""
    if "openai" in sys.modules:
        return sys.modules["openai"]
    with collector.paused(freeze=True):
        import openai
    return openai


class OpenAIConnections:
    """One HTTP connection pool for every OpenAI client of a process, built on first use: the question's
    embedding and the answer then share one TLS connection (one handshake a cold start, not two) and one set of
    CA certificates in memory. Owned by the container, so a SnapStart restore, which builds a new container,
    never reuses a connection from before the snapshot."""

    def __init__(self) -> None:
        self._pool: Any = None

    def pool(self) -> Any:
        if self._pool is None:
            self._pool = openai_module().DefaultHttpxClient()  # the client's own defaults: limits, redirects
        return self._pool


def openai_client(
    settings: Settings, timeout_seconds: float, max_retries: int, connections: OpenAIConnections | None = None
) -> Any:
    """The official client for the configured key and base URL; its timeout and retries are its own, its
    connections shared when `connections` is given."""
    key = settings.openai_api_key
    return openai_module().OpenAI(
        api_key=key.get_secret_value() if key else None,
        base_url=settings.openai_base_url,
        timeout=timeout_seconds,
        max_retries=max_retries,
        http_client=connections.pool() if connections is not None else None,
    )
