"""A warm chat request's own cost: latency without the model's time, and AWS calls per chat.

    python -m bench.warm [--chats 200] [--out bench/results/warm.json]

The chat function's handler, in this process, answers API Gateway HTTP API events for one tenant with one
ready document (moto's server and FakeOpenAI on 127.0.0.1, as bench/cold_start.py sets them up), after a
warm-up. Each request's time is the handler's wall time minus the time spent waiting for OpenAI (the chat
model and the question's embedding, timed around their client calls): what DocuChat itself adds. AWS calls are
counted on botocore's `before-call` event of the function's own clients, per chat, by service and operation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


class ModelClock:
    """Time spent inside the OpenAI client (chat and embeddings), summed per thread's current request."""

    def __init__(self) -> None:
        self._local = threading.local()

    def take(self) -> float:
        spent = getattr(self._local, "seconds", 0.0)
        self._local.seconds = 0.0
        return spent

    def timed(self, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                self._local.seconds = getattr(self._local, "seconds", 0.0) + time.perf_counter() - started

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


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(chats: int, out: Path | None) -> dict[str, Any]:
    from functions.chat import handler

    calls: Counter[str] = Counter()
    items: Counter[str] = Counter()  # what DynamoDB bills by: items in transactions and batch reads

    def count_items(model: Any, params: dict[str, Any]) -> None:
        if model.name == "TransactWriteItems":
            items["transaction_write_items"] += len(params.get("TransactItems", []))
        elif model.name == "BatchGetItem":
            items["batch_get_keys"] += sum(len(t.get("Keys", [])) for t in params.get("RequestItems", {}).values())

    clock = ModelClock()
    own_ms: list[float] = []
    with (
        emulated_backend() as backend,
        fake_aws_credentials({**backend.function_env, **LIMITS}),
        timing_the_model(clock),
    ):
        container = Container(Settings())
        # Registered before any client exists: each client copies the session's events when it is made.
        events = container.aws._session.events
        events.register(
            "before-call.*.*", lambda model, **_: calls.update([f"{model.service_model.service_name}.{model.name}"])
        )
        events.register("before-parameter-build.dynamodb.*", lambda model, params, **_: count_items(model, params))
        handler.configure(container)
        context = LocalLambdaContext("chat")
        for n in range(WARMUP + chats):
            if n == WARMUP:
                calls.clear()
                items.clear()
            body = json.dumps({"message": QUESTIONS[n % len(QUESTIONS)]})
            event = http_api_event("POST", "/v1/chat", body, {"authorization": f"Bearer {backend.api_key}"})
            clock.take()
            started = time.perf_counter()
            response = handler.handler(event, context)
            wall = time.perf_counter() - started
            if response["statusCode"] != 200:
                raise RuntimeError(f"chat answered {response['statusCode']}: {response.get('body')}")
            if n >= WARMUP:
                own_ms.append((wall - clock.take()) * 1000)
    per_chat = {name: round(count / chats, 2) for name, count in sorted(calls.items())}
    report = {
        "benchmark": "warm",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "chats": chats,
        "p50_ms": round(statistics.median(own_ms), 2),
        "p99_ms": round(percentile(own_ms, 0.99), 2),
        "aws_calls_per_chat": round(sum(calls.values()) / chats, 2),
        "aws_calls_by_operation": per_chat,
        "dynamodb_items_per_chat": {name: round(count / chats, 2) for name, count in sorted(items.items())},
        "goals": GOALS,
        "notes": (
            "In-process: the chat function's handler (Mangum, FastAPI, the services) against moto's server on "
            "loopback and FakeOpenAI, one tenant, one document, three questions in turn, after a warm-up of "
            f"{WARMUP}. Time is the handler's wall time minus the time inside the OpenAI client (chat and the "
            "question's embedding). AWS calls counted on botocore's before-call event; DynamoDB on moto answers "
            "in ~1-3 ms on loopback, about what it takes in AWS from Lambda in the same region."
        ),
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
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
    for name, count in report["aws_calls_by_operation"].items():
        print(f"  {count:5.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
