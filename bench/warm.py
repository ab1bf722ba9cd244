"""A warm chat request's own cost: latency without the model's time, and AWS calls per chat.

    python -m bench.warm [--chats 200] [--out bench/results/warm.json]

The chat function's handler, in this process, answers API Gateway HTTP API events for one tenant with one
ready document (moto's server and FakeOpenAI on 127.0.0.1, as bench/cold_start.py sets them up), after a
warm-up: new questions (the model answers them) and repeated ones (the response cache does). Each request's
time is the handler's wall time minus the time spent waiting for OpenAI (the chat
model and the question's embedding, timed around their client calls): what DocuChat itself adds. AWS calls are
counted on botocore's `before-call` event of the function's own clients, per chat, by service and operation.

That time is then split: the AWS calls (botocore's whole call, and within it the HTTP round trip, which is moto
answering on loopback) and the rest, our own Python. moto is no model of DynamoDB's latency: it is Python (in
this process; in a process of its own it measured the same), takes a new connection and a thread of its own for
every call, and copies a whole table for every item of a transaction, so its TransactWriteItems gets slower as
the bench writes conversations.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.client import BaseClient
from botocore.endpoint import Endpoint

from bench._report import write_report
from bench.cold_start import QUESTION, emulated_backend, fake_aws_credentials
from local.lambda_runtime import LocalLambdaContext, http_api_event
from shared.chat.responders import OpenAIUpstream
from shared.container import Container
from shared.embeddings import OpenAIEmbedder
from shared.settings import Settings

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "warm.json"
GOALS = {"p50_ms": 15.0, "aws_calls_per_chat": 4}
WARMUP = 20
# Prod's rate limits would refuse a benchmark's pace; limits stay on (their calls are counted), only higher.
LIMITS = {
    "DOCUCHAT_DEFAULT_LIMITS": json.dumps(
        {"requests_per_minute": 100_000, "requests_per_hour": 1_000_000, "monthly_token_budget": 20_000_000}
    )
}
QUESTIONS = (QUESTION, "What number do I call when it is urgent?", "Is support open at 8?")
NEW_QUESTIONS = (QUESTION, "Which number do I call for urgent help?", "Are refunds accepted within 14 days?")


class ModelClock:
    """Time spent inside the wrapped calls, summed until taken. One sum for the process, not one a thread: the
    handler makes its calls on FastAPI's worker threads, and the bench sends one request at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seconds = 0.0

    def take(self) -> float:
        with self._lock:
            spent, self._seconds = self._seconds, 0.0
        return spent

    def add(self, seconds: float) -> None:
        with self._lock:
            self._seconds += seconds

    def timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self.add(time.perf_counter() - started)

        return wrapper


class AwsClock:
    """Time in botocore's calls (`call`: building, signing, sending, parsing) and, within them, in the HTTP round
    trip (`wait`: moto answering), per request and by operation."""

    def __init__(self) -> None:
        self.call, self.wait = ModelClock(), ModelClock()
        self._local = threading.local()  # the HTTP wait of the call running on this thread
        self.call_ms: defaultdict[str, list[float]] = defaultdict(list)
        self.wait_ms: defaultdict[str, list[float]] = defaultdict(list)

    def clear(self) -> None:
        self.call_ms.clear()
        self.wait_ms.clear()

    def timed_call(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(client: Any, operation: str, params: Any) -> Any:
            self._local.wait = 0.0
            started = time.perf_counter()
            try:
                return call(client, operation, params)
            finally:
                spent = time.perf_counter() - started
                self.call.add(spent)
                name = f"{client.meta.service_model.service_name}.{operation}"
                self.call_ms[name].append(spent * 1000)
                self.wait_ms[name].append(self._local.wait * 1000)

        return wrapper

    def timed_send(self, send: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                self.wait.add(spent)
                self._local.wait = getattr(self._local, "wait", 0.0) + spent

        return wrapper


@contextmanager
def timing_the_model(clock: ModelClock) -> Iterator[None]:
    saved = OpenAIUpstream.complete, OpenAIEmbedder.embed
    OpenAIUpstream.complete = clock.timed(OpenAIUpstream.complete)  # type: ignore[method-assign]
    OpenAIEmbedder.embed = clock.timed(OpenAIEmbedder.embed)  # type: ignore[method-assign]
    try:
        yield
    finally:
        OpenAIUpstream.complete, OpenAIEmbedder.embed = saved  # type: ignore[method-assign]


@contextmanager
def timing_aws(clock: AwsClock) -> Iterator[None]:
    """botocore's private call and send methods, wrapped: its events cannot bracket the HTTP round trip."""
    saved = BaseClient._make_api_call, Endpoint._send
    BaseClient._make_api_call = clock.timed_call(BaseClient._make_api_call)
    Endpoint._send = clock.timed_send(Endpoint._send)
    try:
        yield
    finally:
        BaseClient._make_api_call, Endpoint._send = saved


def median(values: list[float]) -> float:
    return round(statistics.median(values), 2)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def new_question(n: int) -> str:
    """A question no earlier request asked, so the response cache misses and the model answers."""
    # A number no document has weighs in keyword search: these questions' other words still outweigh it.
    return f"{NEW_QUESTIONS[n % len(NEW_QUESTIONS)]} {n}"


def repeated_question(n: int) -> str:
    """One of three questions, asked again and again: after the first of each, the response cache answers."""
    return QUESTIONS[n % len(QUESTIONS)]


class Counted:
    """AWS calls by service and operation, and what DynamoDB bills by: items written in batches and
    transactions, keys read in batches. Fed by botocore's events on the function's own session."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.items: Counter[str] = Counter()

    def call(self, model: Any, **_: Any) -> None:
        self.calls[f"{model.service_model.service_name}.{model.name}"] += 1

    def parameters(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        requests = params.get("RequestItems", {})
        if model.name == "TransactWriteItems":
            self.items["transaction_write_items"] += len(params.get("TransactItems", []))
        elif model.name == "BatchWriteItem":
            self.items["batch_write_items"] += sum(len(writes) for writes in requests.values())
        elif model.name == "BatchGetItem":
            self.items["batch_get_keys"] += sum(len(read.get("Keys", [])) for read in requests.values())

    def clear(self) -> None:
        self.calls.clear()
        self.items.clear()

    def per_chat(self, chats: int) -> dict[str, Any]:
        return {
            "aws_calls_per_chat": round(sum(self.calls.values()) / chats, 2),
            "aws_calls_by_operation": {name: round(n / chats, 2) for name, n in sorted(self.calls.items())},
            "dynamodb_items_per_chat": {name: round(n / chats, 2) for name, n in sorted(self.items.items())},
        }


class CountingStream(io.TextIOBase):
    """Standard output, counted: what the function writes there (logs and EMF metrics) is what CloudWatch
    Logs ingests and bills."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.bytes = 0

    def write(self, text: str) -> int:
        self.bytes += len(text.encode())
        return int(self.target.write(text))

    def flush(self) -> None:
        self.target.flush()


@contextmanager
def counting_stdout() -> Iterator[CountingStream]:
    """sys.stdout and every logging handler writing to it, counted (Powertools' logger keeps its own reference)."""
    original = sys.stdout
    counter = CountingStream(original)
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in logging.root.manager.loggerDict)]
    handlers = [
        h
        for logger in loggers
        for h in logger.handlers
        if isinstance(h, logging.StreamHandler) and h.stream is original
    ]
    sys.stdout = counter
    for handler in handlers:
        handler.stream = counter
    try:
        yield counter
    finally:
        sys.stdout = original
        for handler in handlers:
            handler.stream = original


def measure(
    handler: Any,
    api_key: str,
    clock: ModelClock,
    aws: AwsClock,
    counted: Counted,
    question: Callable[[int], str],
    chats: int,
) -> dict[str, Any]:
    """`chats` chats after a warm-up: their own time (without the model's), AWS calls, DynamoDB items, and the
    bytes they log."""
    context = LocalLambdaContext("chat")
    own_ms: list[float] = []
    aws_call_ms: list[float] = []
    aws_wait_ms: list[float] = []
    with counting_stdout() as logged:
        for n in range(WARMUP + chats):
            if n == WARMUP:
                counted.clear()
                aws.clear()
                logged.bytes = 0
            body = json.dumps({"message": question(n)})
            event = http_api_event("POST", "/v1/chat", body, {"authorization": f"Bearer {api_key}"})
            clock.take(), aws.call.take(), aws.wait.take()
            started = time.perf_counter()
            response = handler.handler(event, context)
            wall = time.perf_counter() - started
            if response["statusCode"] != 200:
                raise RuntimeError(f"chat answered {response['statusCode']}: {response.get('body')}")
            if n >= WARMUP:
                own_ms.append((wall - clock.take()) * 1000)
                aws_call_ms.append(aws.call.take() * 1000)
                aws_wait_ms.append(aws.wait.take() * 1000)
    return {
        "chats": chats,
        "p50_ms": median(own_ms),
        "p99_ms": round(percentile(own_ms, 0.99), 2),
        **counted.per_chat(chats),
        # The split of p50_ms: each a per-chat p50 of its own, so they need not add up exactly.
        "aws_calls_ms_p50": median(aws_call_ms),
        "aws_wait_ms_p50": median(aws_wait_ms),
        "botocore_ms_p50": median([c - w for c, w in zip(aws_call_ms, aws_wait_ms, strict=True)]),
        "own_python_ms_p50": median([o - c for o, c in zip(own_ms, aws_call_ms, strict=True)]),
        "aws_ms_per_call_by_operation": {
            name: {"call_p50": median(aws.call_ms[name]), "wait_p50": median(aws.wait_ms[name])}
            for name in sorted(aws.call_ms)
        },
        "log_bytes_per_chat": round(logged.bytes / chats),
    }


def run(chats: int, out: Path | None) -> dict[str, Any]:
    from functions.chat import handler

    clock, aws, counted = ModelClock(), AwsClock(), Counted()
    with (
        emulated_backend() as backend,
        fake_aws_credentials({**backend.function_env, **LIMITS}),
        timing_the_model(clock),
        timing_aws(aws),
    ):
        container = Container(Settings())
        # Registered before any client exists: each client copies the session's events when it is made.
        events = container.aws._session.events
        events.register("before-call.*.*", counted.call)
        events.register("before-parameter-build.dynamodb.*", counted.parameters)
        handler.configure(container)
        answered = measure(handler, backend.api_key, clock, aws, counted, new_question, chats)
        cached = measure(handler, backend.api_key, clock, aws, counted, repeated_question, max(chats // 4, 1))
    report = {
        "benchmark": "warm",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        # The headline: a question the model answers (the response cache misses), as most questions are.
        **answered,
        "goals": GOALS,
        # The same three questions again and again: the response cache answers, no model is called.
        "repeated_question": cached,
        "notes": (
            "In-process: the chat function's handler (Mangum, FastAPI, the services) against moto's server on "
            "loopback and FakeOpenAI, prod's settings, one tenant, one document, after a warm-up of "
            f"{WARMUP}. Each headline chat asks a new question (the response cache misses); `repeated_question` "
            "asks three questions in turn (it hits). Time is the handler's wall time minus the time inside the "
            "OpenAI client (chat and the question's embedding). AWS calls counted on botocore's before-call "
            "event. aws_calls_ms is the time in botocore's calls, aws_wait_ms its HTTP round trips (moto "
            "answering: Python in this process, a connection a call), botocore_ms the rest of botocore's work, "
            "own_python_ms the handler's time outside the AWS calls and the model. log_bytes_per_chat: what "
            "the function writes to standard output (its JSON logs and EMF metrics)."
        ),
    }
    if out is not None:
        write_report(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args(argv)
    report = run(args.chats, args.out)
    print(
        f"warm chat, {args.chats} requests: p50 {report['p50_ms']} ms, p99 {report['p99_ms']} ms without the model; "
        f"{report['aws_calls_per_chat']} AWS calls a chat (goals: {GOALS})"
    )
    print(
        f"  split (p50s): AWS calls {report['aws_calls_ms_p50']} ms, of which moto's HTTP round trips "
        f"{report['aws_wait_ms_p50']} ms; own Python {report['own_python_ms_p50']} ms"
    )
    for name, count in report["aws_calls_by_operation"].items():
        ms = report["aws_ms_per_call_by_operation"][name]
        print(f"  {count:5.2f}  {name}  ({ms['call_p50']} ms a call, {ms['wait_p50']} ms of it moto's)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
