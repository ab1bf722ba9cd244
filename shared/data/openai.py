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


def openai_client(settings: Settings, timeout_seconds: float, max_retries: int) -> Any:
    """The official client for the configured key and base URL."""
    key = settings.openai_api_key
    return openai_module().OpenAI(
        api_key=key.get_secret_value() if key else None,
        base_url=settings.openai_base_url,
        timeout=timeout_seconds,
        max_retries=max_retries,
    )
