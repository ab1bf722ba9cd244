"""Streaming, whoever is listening: a pump that reads the answer to its end, and the Server-Sent Events wire format.

The pump runs the answer's generator on a thread of its own and hands its events over through a queue. The
reader may go away (a closed tab; on Lambda nobody even says so): the pump still reads the model to its end
within the deadline, so the usage it reports is known and metered, once, through the same path as every other
answer. While nothing is ready (retrieval, the model thinking before its first token) the reader gets a
keep-alive instead, so proxies and load balancers do not cut an idle stream.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any, Generic, TypeVar

from shared.observability import logger

T = TypeVar("T")
KEEPALIVE_COMMENT = ": keep-alive\n\n"


class KeepAlive:
    """Nothing new yet: the reader should send a keep-alive."""


class PumpFailed(Exception):
    """The generator raised: its exception is `__cause__`."""


_END = object()


class Pump(Generic[T]):
    def __init__(self, events: Iterator[T], keepalive_seconds: float, name: str = "stream-pump") -> None:
        self._events = events
        self._keepalive = keepalive_seconds
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._events:
                self._queue.put(event)
        except Exception as error:  # handed to the reader; the pump itself must never die silently
            logger.exception("a streamed answer failed")
            failed = PumpFailed(str(error))
            failed.__cause__ = error
            self._queue.put(failed)
        finally:
            self._queue.put(_END)

    def __iter__(self) -> Iterator[T | KeepAlive | PumpFailed]:
        yield KeepAlive()  # at once: the reader knows the stream is open before any work is done
        while True:
            try:
                item = self._queue.get(timeout=self._keepalive)
            except queue.Empty:
                yield KeepAlive()
                continue
            if item is _END:
                return
            yield item

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)


def sse(event: str, data: Any) -> str:
    """One Server-Sent Event: `event: <name>` and its JSON data."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"


def sse_data(data: Any) -> str:
    """One unnamed event, as OpenAI streams its chunks: `data: <json>`."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {payload}\n\n"
