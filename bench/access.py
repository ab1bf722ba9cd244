"""What spend and access control cost, and how far a budget can be overrun.

    python -m bench.access [--chats 60] [--trials 5] [--out bench/results/access.json]

Three measurements:

- **DynamoDB calls per request**, counted on the client (botocore's before-call event) against DynamoDB Local:
  the rate check, a budget's reserve and settle, and the same near a spent budget.
- **The warm chat's added latency with limits on**: `python -m local`, two tenants, one unlimited and one with
  (high) rate limits and a budget, asked the same questions in turn; medians and p95 of each.
- **The budget race**: many threads reserve and settle near the limit at once, against DynamoDB Local, in trials.
  Once with each call using at most what it reserved (the prompt counted right), and once with calls using up to
  10% more (a prompt estimate that came out short), the one way a budget can be passed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx

from bench._local import tenant_with_documents
from bench._report import write_report
from local.bootstrap import create_tables
from local.dynamodb_local import DynamoDBLocal
from local.process import LocalProcess
from shared import resources
from shared.access.budgets import BudgetService
from shared.access.limits import RateLimiter
from shared.data.limits import BudgetStore, RateCounters
from shared.errors import BudgetExhausted
from shared.ids import new_id
from shared.models import Limits, Principal

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "access.json"
STAGE = "bench"
POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."
QUESTIONS = ["When is the support line open?", "What number do I call when it is urgent?", "Is support open at 8?"]


class _Silent:
    def budget_threshold(self, tenant_id: str, period: str, used: int, limit: int) -> None:
        """The benchmark's tenants need no notice."""


@contextmanager
def counting(client: Any) -> Iterator[Counter[str]]:
    """Counts the DynamoDB operations the client makes inside the block."""
    calls: Counter[str] = Counter()

    def count(event_name: str, **_: Any) -> None:
        calls[event_name.rsplit(".", 1)[-1]] += 1

    client.meta.events.register("before-call.dynamodb", count)
    try:
        yield calls
    finally:
        client.meta.events.unregister("before-call.dynamodb", count)


def per_request(calls: Counter[str], requests: int) -> dict[str, float]:
    return {operation: round(n / requests, 2) for operation, n in sorted(calls.items())}


def timed_ms(action: Callable[[], Any], runs: int) -> float:
    timings = []
    for _ in range(runs):
        began = time.perf_counter()
        action()
        timings.append((time.perf_counter() - began) * 1000)
    return round(statistics.median(timings), 2)


def dynamodb_costs(client: Any, table: str, runs: int = 200) -> dict[str, Any]:
    clock = lambda: datetime.now(UTC)  # noqa: E731
    limiter = RateLimiter(RateCounters(client, table), clock)
    budgets = BudgetService(BudgetStore(client, table), _Silent(), "Asia/Tehran", clock)
    principal = Principal(
        tenant_id=new_id("t"), key_id="k1", limits=Limits(requests_per_minute=10**6, requests_per_hour=10**7)
    )
    with counting(client) as rate_calls:
        for _ in range(runs):
            limiter.check(principal)
    with counting(client) as budget_calls:
        for _ in range(runs):
            budgets.settle(budgets.reserve(principal.tenant_id, 10**9, 900), 700)
    # A budget with room for a few calls only: the refusals read the reservations once to look for abandoned ones
    tight = new_id("t")
    with counting(client) as tight_calls:
        for _ in range(runs // 10):
            with suppress(BudgetExhausted):
                budgets.settle(budgets.reserve(tight, 4_000, 900), 900)
    return {
        "rate_check": {
            "calls_per_request": per_request(rate_calls, runs),
            "p50_ms": timed_ms(lambda: limiter.check(principal), runs),
        },
        "budget_reserve_and_settle": {
            "calls_per_request": per_request(budget_calls, runs),
            "p50_ms": timed_ms(lambda: budgets.settle(budgets.reserve(principal.tenant_id, 10**9, 900), 700), runs),
        },
        "budget_near_spent": {"calls_per_request": per_request(tight_calls, runs // 10)},
    }


LIMIT, RESERVE, CALLS, THREADS = 10_000, 400, 64, 16


def race_trial(client: Any, table: str, trial: int, over_share: float) -> int:
    """64 calls, 16 at once, reserving 400 of a 10,000-token budget; each uses 300 to 400 tokens, or up to
    `over_share` more than it reserved. Returns what they spent."""
    budgets = BudgetService(BudgetStore(client, table), _Silent(), "Asia/Tehran", lambda: datetime.now(UTC))
    tenant_id = new_id("t")
    barrier = threading.Barrier(THREADS)

    def call(number: int) -> int:
        if number < THREADS:
            barrier.wait()
        try:
            reservation = budgets.reserve(tenant_id, LIMIT, RESERVE)
        except BudgetExhausted:
            return 0
        used = 300 + (number * 37 + trial * 11) % 101
        if over_share:
            used = int(RESERVE * (1 + over_share * ((number * 53 + trial) % 100) / 100))
        budgets.settle(reservation, used)
        return used

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        spent = sum(pool.map(call, range(CALLS)))
    status = budgets.status(tenant_id, LIMIT)
    assert status.used == spent and status.reserved == 0, (status, spent)
    return spent


def race(client: Any, table: str, trials: int, over_share: float) -> dict[str, Any]:
    spent = [race_trial(client, table, trial, over_share) for trial in range(trials)]
    worst = max(0, max(spent) - LIMIT)
    return {
        "limit": LIMIT,
        "reservation": RESERVE,
        "calls_per_trial": CALLS,
        "threads": THREADS,
        "trials": trials,
        "calls_use_up_to": f"{100 * (1 + over_share):.0f}% of their reservation",
        "spent_per_trial": spent,
        "worst_overrun_tokens": worst,
        "worst_overrun_share_of_limit": round(worst / LIMIT, 4),
    }


def chat_latency(chats: int) -> dict[str, Any]:
    admin_key = "dca_bench_" + secrets.token_urlsafe(12)
    limited: dict[str, int | None] = {
        "requests_per_minute": 100_000,
        "requests_per_hour": 1_000_000,
        "monthly_token_budget": 10**9,
    }
    with tempfile.TemporaryDirectory() as logs, LocalProcess(Path(logs) / "run.log", admin_key) as runtime:
        keys = {
            "limits_off": tenant_with_documents(runtime.url, admin_key, {"Support": POLICY}),
            "limits_on": tenant_with_documents(runtime.url, admin_key, {"Support": POLICY}, limits=limited),
        }
        timings: dict[str, list[float]] = {name: [] for name in keys}
        with httpx.Client(base_url=runtime.url, timeout=60) as api:
            for n in range(chats + 5):
                # In turn, the order swapped each round: each chat's metering runs in the background just after
                # it, so whichever came second would pay for the first's.
                order = list(keys.items()) if n % 2 == 0 else list(reversed(keys.items()))
                for name, key in order:
                    began = time.perf_counter()
                    reply = api.post(
                        "/v1/chat", json={"message": QUESTIONS[n % 3]}, headers={"Authorization": f"Bearer {key}"}
                    )
                    reply.raise_for_status()
                    if n >= 5:  # the first few warm the index and the model
                        timings[name].append((time.perf_counter() - began) * 1000)
            headers = reply.headers
    summary = {
        name: {"p50_ms": round(statistics.median(t), 1), "p95_ms": round(statistics.quantiles(t, n=20)[-1], 1)}
        for name, t in timings.items()
    }
    return {
        "chats_each": chats,
        **summary,
        "added_p50_ms": round(summary["limits_on"]["p50_ms"] - summary["limits_off"]["p50_ms"], 1),
        "rate_headers_seen": "x-ratelimit-remaining" in headers,
    }


def run(chats: int, trials: int, out: Path | None) -> dict[str, Any]:
    with DynamoDBLocal(jvm_args=()) as server:
        client = boto3.client("dynamodb", **server.client_kwargs())
        create_tables(client, STAGE)
        table = resources.USAGE.physical_name(STAGE)
        costs = dynamodb_costs(client, table)
        print(json.dumps(costs), flush=True)
        races = {
            "estimates_right": race(client, table, trials, 0.0),
            "estimates_10pct_short": race(client, table, trials, 0.1),
        }
        print(json.dumps(races), flush=True)
    latency = chat_latency(chats)
    result = {
        "benchmark": "access",
        "backend": "DynamoDB Local",
        "dynamodb": costs,
        "budget_race": races,
        "warm_chat": latency,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if out:
        write_report(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chats", type=int, default=60)
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    print(json.dumps(run(args.chats, args.trials, args.out), indent=2))


if __name__ == "__main__":
    main()
