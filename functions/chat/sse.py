"""The chat answers as Server-Sent Events: DocuChat's own events for /v1/chat, OpenAI's chunks for completions.

Both read the answer through a Pump (shared/chat/streaming.py), so the model is read to its end, and metered,
even when the client has gone; both send keep-alive comments while nothing else is ready; and a failure after
the stream has started ends it with an error event, never with silence that looks like a finished answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.responses import StreamingResponse

from shared.chat.service import ChatEvent, CitationsReady, Finished, StreamError, TextDelta
from shared.chat.streaming import KEEPALIVE_COMMENT, KeepAlive, Pump, PumpFailed, sse, sse_data
from shared.data.aws import is_unavailable

# Proxies must pass the bytes on as they come: no caching, no buffering (nginx honours X-Accel-Buffering).
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event_stream(body: Iterator[str]) -> StreamingResponse:
    return StreamingResponse(body, media_type="text/event-stream", headers=STREAM_HEADERS)


def _failure(failed: PumpFailed) -> tuple[str, str]:
    if failed.__cause__ is not None and is_unavailable(failed.__cause__):
        return "service_unavailable", "a service DocuChat depends on is unavailable; ask again in a moment"
    return "internal_error", "the answer failed; it has been logged"


def chat_events(events: Iterator[ChatEvent], keepalive_seconds: float) -> Iterator[str]:
    """citations, then delta events, then done (or error)."""
    for event in Pump(events, keepalive_seconds, name="chat-stream"):
        if isinstance(event, KeepAlive):
            yield KEEPALIVE_COMMENT
        elif isinstance(event, CitationsReady):
            yield sse("citations", {"citations": [c.model_dump(mode="json") for c in event.citations]})
        elif isinstance(event, TextDelta):
            yield sse("delta", {"text": event.text})
        elif isinstance(event, Finished):
            result = event.result
            usage = {
                "input_tokens": result.input_tokens,
                "output_tokens": result.output_tokens,
                "total_tokens": result.input_tokens + result.output_tokens,
                "embedding_tokens": result.embedding_tokens,
            }
            done = {"conversation_id": result.conversation_id, "usage": usage, "model": result.model}
            yield sse("done", {**done, "route": result.route, "cached": result.cached})
        elif isinstance(event, StreamError):
            yield sse("error", {"code": event.code, "message": event.message})
        elif isinstance(event, PumpFailed):
            code, message = _failure(event)
            yield sse("error", {"code": code, "message": message})


def completion_chunks(chunks: Iterator[dict[str, Any] | str], keepalive_seconds: float) -> Iterator[str]:
    """`data: <chunk>` lines, ending with `data: [DONE]`, or with an error chunk when the answer broke off."""
    for chunk in Pump(chunks, keepalive_seconds, name="completion-stream"):
        if isinstance(chunk, KeepAlive):
            yield KEEPALIVE_COMMENT
        elif isinstance(chunk, PumpFailed):
            code, message = _failure(chunk)
            yield sse_data({"error": {"message": message, "type": "server_error", "param": None, "code": code}})
        else:
            yield sse_data(chunk)
