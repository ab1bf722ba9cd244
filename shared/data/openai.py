"""The official OpenAI client, built in one place for the chat models and the embeddings."""

from __future__ import annotations

from typing import Any

from shared.settings import Settings


def openai_client(settings: Settings, timeout_seconds: float, max_retries: int) -> Any:
    """The official client for the configured key and base URL; `openai` is imported on first use, which keeps
    cold starts without a key fast."""
    import openai

    key = settings.openai_api_key
    return openai.OpenAI(
        api_key=key.get_secret_value() if key else None,
        base_url=settings.openai_base_url,
        timeout=timeout_seconds,
        max_retries=max_retries,
    )
