"""Metering throughput: usage events per second through the metering function, and DynamoDB writes per event.

    python -m bench.metering [--events 5000] [--moto-events 500] [--tenants 20] [--repetitions 3]
                             [--backends moto dynamodb_local] [--no-warmup] [--profile]
                             [--out bench/results/metering.json]

The real handler (functions.metering.handler) runs in this process with a Container of its own, against moto's
server (a thread of this process, on 127.0.0.1) and against DynamoDB Local (AWS's implementation, a Java process
on loopback). Per repetition (not timed): fresh tables under a stage of their own, the workload's tenants, one
Lambda SQS event per batch of 100 records (the deployed batch size). Timed: the handler called on each batch in
turn, as one warm Lambda instance would. Every DynamoDB call the Container's client makes is counted through
botocore's event hooks. After each run the counters are checked against the workload's unique events: a
mismatch, or a record the handler reports as failed, stops the benchmark.

Scenarios: `spread` (events over --tenants tenants and 2 models, one day), `busy_tenant` (every event from one
tenant) and `duplicates` (like spread, but 10% of the records repeat an earlier event under a new message id).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import logging
import os
import platform
import pstats
import random
import secrets
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import moto
from moto.server import ThreadedMotoServer

from bench._report import write_report
from bench.cold_start import fake_aws_credentials
from functions.metering import handler as metering
from local.bootstrap import create_tables
from local.dynamodb_local import DynamoDBLocal, find_jar
from local.lambda_runtime import LocalLambdaContext, sqs_event
from shared import resources
from shared.container import Container
from shared.metering import billing_day
from shared.models import Tenant, UsageEvent, UsageKind
from shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "metering.json"
BATCH_SIZE = resources.USAGE_QUEUE.batch_size
DEFAULT_EVENTS = 5_000
DEFAULT_TENANTS = 20
DEFAULT_REPETITIONS = 3
# moto's TransactWriteItems deep-copies the whole table once per item of the transaction (moto 5.2,
# dynamodb/models/__init__.py, transact_write_items): its cost grows with the table, so a run grows
# quadratically with its length. 5,000 records would take about an hour per run there.
DEFAULT_MOTO_EVENTS = 500
# Unrecorded: one run of each scenario with this share of the records, per backend (DynamoDB Local's JIT
# needs some 10,000 events before its throughput settles).
WARMUP_SHARE = 0.4
DUPLICATE_SHARE = 0.10
MODELS = ("gpt-4o-mini", "text-embedding-3-small")
SCENARIOS = ("spread", "busy_tenant", "duplicates")
BACKENDS = ("moto", "dynamodb_local")
GOAL_EVENTS_PER_SECOND = 1_000
GOAL_WRITES_PER_EVENT = 1.1
TIMEZONE = "Asia/Tehran"
# One billing day: 03:00-18:00 UTC is 06:30-21:30 in Tehran.
DAY_START = datetime(2026, 1, 15, 3, 0, tzinfo=UTC)
DAY_SPAN_SECONDS = 15 * 3600
ACCOUNT = "123456789012"
# The DynamoDB Local backend sends every other AWS service here, where nothing listens: the metering function
# must not need any, and if it did the benchmark would fail on the spot instead of reaching real AWS.
NOWHERE = "http://127.0.0.1:9"
# Full JIT (tests use C1 only, for a fast start); the warm-up runs give it time to compile the hot paths.
DYNAMODB_LOCAL_JVM_ARGS: tuple[str, ...] = ()
SEED = 20260115

WRITE_OPERATIONS = ("TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem")
READ_OPERATIONS = ("GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems")

NOTES = (
    "In-process: the real metering handler (Powertools BatchProcessor, partial batch responses, one "
    "TransactWriteItems per tenant/day/model group with a claim per event, one sharded counter update and a "
    "day-open ConditionCheck) on a warm Container, called sequentially with Lambda SQS events of "
    f"{BATCH_SIZE} records (the deployed batch size). "
    "Timed: the handler calls only; building events, tables and tenants is not. events_per_second is the median "
    "of the repetitions (each on fresh tables, fresh Container) after unrecorded warm-up runs "
    "(each scenario once, 40% of the records). "
    "Per-event figures divide by records delivered (duplicates included). write_requests_per_event counts "
    "DynamoDB write API calls (TransactWriteItems, PutItem, UpdateItem, DeleteItem, BatchWriteItem), cancelled "
    "transactions included. items_written_per_event counts the items those calls write (Put, Update, Delete "
    "inside transactions; each BatchWriteItem request), a cancelled transaction's too, as they consume "
    "capacity. ConditionChecks are counted apart: in DynamoDB they consume write capacity as well, and every "
    "transactional item costs 2 WCUs. reads_per_event: GetItem, Query, Scan, BatchGetItem calls (the "
    "tenant-exists lookup, cached per Container). http_attempts - api_calls = botocore retries. The call counts "
    "are the same on both backends (same workloads, same code); the timings are not comparable. moto's server "
    "is a thread of the benchmark's own process, sharing its GIL, and its TransactWriteItems deep-copies the "
    "whole table once per transaction item, so its cost grows with the table (compare "
    "events_per_second_first_tenth and _last_tenth): moto runs fewer records (events_by_backend), and its "
    "events/s measure moto rather than the handler. DynamoDB Local is a separate JVM on loopback. Neither has "
    "network latency or DynamoDB's per-partition limits: deployed throughput depends on DynamoDB's latency "
    "(single-digit ms per transaction) and on Lambda's concurrency across batches."
)


class BenchmarkFailed(RuntimeError):
    """The metering function lost, double counted or refused events: the figures would be meaningless."""


# --- workload ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    scenario: str
    tenants: list[str]
    records: list[UsageEvent]  # in delivery order; duplicates included
    unique: list[UsageEvent]


def _tenant_id(rng: random.Random) -> str:
    return f"t{rng.getrandbits(64):016x}"


def _usage_event(rng: random.Random, tenant_id: str) -> UsageEvent:
    model = rng.choice(MODELS)
    return UsageEvent(
        event_id=f"u{rng.getrandbits(96):024x}",
        tenant_id=tenant_id,
        key_id=f"k{rng.getrandbits(40):010x}",
        kind=UsageKind.CHAT if model.startswith("gpt") else UsageKind.EMBEDDING,
        model=model,
        input_tokens=rng.randint(20, 4_000),
        output_tokens=rng.randint(0, 1_000) if model.startswith("gpt") else 0,
        occurred_at=DAY_START + timedelta(seconds=rng.uniform(0, DAY_SPAN_SECONDS)),
    )


def make_workload(scenario: str, events: int, tenants: int = DEFAULT_TENANTS, seed: int = SEED) -> Workload:
    """`events` records of one billing day, in a delivery order drawn from `seed` (the same every repetition)."""
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; choose from {', '.join(SCENARIOS)}")
    if events < 1 or tenants < 1:
        raise ValueError("events and tenants must be at least 1")
    rng = random.Random(f"{seed}-{scenario}")
    tenant_ids = [_tenant_id(rng) for _ in range(1 if scenario == "busy_tenant" else tenants)]
    repeats = round(events * DUPLICATE_SHARE) if scenario == "duplicates" else 0
    unique = [_usage_event(rng, rng.choice(tenant_ids)) for _ in range(events - repeats)]
    # Each repeat lands somewhere after its original: in the same batch or, mostly, in a later one.
    placed = [(float(i), event) for i, event in enumerate(unique)]
    for _ in range(repeats):
        original = rng.randrange(len(unique))
        placed.append((rng.uniform(original + 0.5, len(unique)), unique[original]))
    placed.sort(key=lambda pair: pair[0])
    return Workload(scenario, tenant_ids, [event for _, event in placed], unique)


def sqs_batches(records: Sequence[UsageEvent], queue_arn: str, batch_size: int = BATCH_SIZE) -> list[dict[str, Any]]:
    """The Lambda SQS events the event source mapping would deliver; every record gets a message id of its own."""
    batches = []
    for start in range(0, len(records), batch_size):
        messages = []
        for event in records[start : start + batch_size]:
            message_id = str(uuid.uuid4())
            messages.append(
                {"MessageId": message_id, "ReceiptHandle": f"rh-{message_id}", "Body": event.model_dump_json()}
            )
        batches.append(sqs_event(messages, queue_arn))
    return batches


# --- counting DynamoDB calls ------------------------------------------------------------------------------------


@dataclass
class DynamoDBCalls:
    """DynamoDB calls made through one botocore client, counted by its event hooks (API calls, not HTTP)."""

    calls: Counter[str] = field(default_factory=Counter)
    items: Counter[str] = field(default_factory=Counter)  # put, update, delete, condition_check
    errors: Counter[str] = field(default_factory=Counter)
    http_attempts: int = 0
    _client: Any = None

    def attach(self, client: Any) -> DynamoDBCalls:
        events = client.meta.events
        events.register("before-parameter-build.dynamodb", self._on_call, unique_id="bench-metering-call")
        events.register("before-send.dynamodb", self._on_send, unique_id="bench-metering-send")
        events.register("after-call.dynamodb", self._on_reply, unique_id="bench-metering-reply")
        self._client = client
        return self

    def detach(self) -> None:
        if self._client is not None:
            events = self._client.meta.events
            events.unregister("before-parameter-build.dynamodb", unique_id="bench-metering-call")
            events.unregister("before-send.dynamodb", unique_id="bench-metering-send")
            events.unregister("after-call.dynamodb", unique_id="bench-metering-reply")
            self._client = None

    def reset(self) -> None:
        self.calls.clear()
        self.items.clear()
        self.errors.clear()
        self.http_attempts = 0

    def _on_call(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        operation = model.name
        self.calls[operation] += 1
        if operation == "TransactWriteItems":
            for item in params.get("TransactItems", []):
                for kind in item:
                    self.items[_ITEM_KINDS.get(kind, kind)] += 1
        elif operation == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    self.items["put" if "PutRequest" in request else "delete"] += 1
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            self.items[_ITEM_KINDS[operation]] += 1

    def _on_send(self, **_: Any) -> None:
        self.http_attempts += 1

    def _on_reply(self, http_response: Any, parsed: dict[str, Any], **_: Any) -> None:
        if http_response.status_code >= 300:
            self.errors[parsed.get("Error", {}).get("Code", str(http_response.status_code))] += 1

    @property
    def write_requests(self) -> int:
        return sum(self.calls[op] for op in WRITE_OPERATIONS)

    @property
    def read_requests(self) -> int:
        return sum(self.calls[op] for op in READ_OPERATIONS)

    @property
    def items_written(self) -> int:
        return self.items["put"] + self.items["update"] + self.items["delete"]


_ITEM_KINDS = {
    "Put": "put",
    "Update": "update",
    "Delete": "delete",
    "ConditionCheck": "condition_check",
    "PutItem": "put",
    "UpdateItem": "update",
    "DeleteItem": "delete",
}


# --- one run ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoints:
    """Where the Container's clients go: DynamoDB, and every other AWS service."""

    aws: str
    dynamodb: str | None = None


@dataclass(frozen=True)
class Run:
    batch_seconds: list[float]  # each handler call, in order
    batch_records: list[int]
    calls: DynamoDBCalls
    verified: dict[str, int]

    @property
    def seconds(self) -> float:
        return sum(self.batch_seconds)

    @property
    def records(self) -> int:
        return sum(self.batch_records)

    @property
    def events_per_second(self) -> float:
        return self.records / self.seconds

    def tenth_events_per_second(self, last: bool) -> float:
        """Throughput over the first (or last) tenth of the batches: a drop means cost grows with the table."""
        n = max(1, len(self.batch_seconds) // 10)
        part = slice(-n, None) if last else slice(0, n)
        return sum(self.batch_records[part]) / sum(self.batch_seconds[part])


def bench_settings(endpoints: Endpoints, stage: str) -> Settings:
    """Settings for a stage of the benchmark's own; every name is explicit, so no DOCUCHAT_* variable leaks in."""
    return Settings(
        stage=stage,
        aws_endpoint_url=endpoints.aws,
        dynamodb_endpoint_url=endpoints.dynamodb,
        tenants_table=resources.TENANTS.physical_name(stage),
        documents_table=resources.DOCUMENTS.physical_name(stage),
        conversations_table=resources.CONVERSATIONS.physical_name(stage),
        usage_table=resources.USAGE.physical_name(stage),
        billing_table=resources.BILLING.physical_name(stage),
        usage_queue_url=f"{endpoints.aws}/{ACCOUNT}/{resources.USAGE_QUEUE.physical_name(stage)}",
        billing_timezone=TIMEZONE,
        # Group transactions in flight at once (BENCH_METERING_CONCURRENCY, default 8 as deployed); DynamoDB on
        # moto (no separate endpoint) takes one at a time, because moto's transactions are not thread-safe.
        metering_concurrency=int(os.environ.get("BENCH_METERING_CONCURRENCY", "8")) if endpoints.dynamodb else 1,
    )


def verify(container: Container, workload: Workload) -> dict[str, int]:
    """Each tenant's counters hold exactly its unique events and their tokens, all on the workload's day."""
    expected: dict[str, list[int]] = {tenant_id: [0, 0] for tenant_id in workload.tenants}
    for event in workload.unique:
        expected[event.tenant_id][0] += 1
        expected[event.tenant_id][1] += event.total_tokens
    day = billing_day(DAY_START, container.settings.billing_timezone)
    problems = []
    for tenant_id, (events, tokens) in expected.items():
        counters = container.usage.counters_for_tenant(tenant_id, day - timedelta(days=1), day + timedelta(days=1))
        counted = (sum(c.events for c in counters), sum(c.total_tokens for c in counters))
        stray_days = sorted({str(c.day) for c in counters if c.day != day})
        if counted != (events, tokens) or stray_days:
            problems.append(
                f"tenant {tenant_id}: counted {counted[0]} events / {counted[1]} tokens, expected {events} / {tokens}"
                + (f", and counters on other days {stray_days}" if stray_days else "")
            )
    if problems:
        raise BenchmarkFailed(
            f"{workload.scenario}: the counters do not match the unique events:\n  " + "\n  ".join(problems)
        )
    return {
        "tenants": len(expected),
        "events": sum(e for e, _ in expected.values()),
        "tokens": sum(t for _, t in expected.values()),
    }


def _delete_tables(dynamodb: Any, stage: str) -> None:
    for spec in resources.TABLES:
        with contextlib.suppress(Exception):  # cleanup only: a left-over table does not change the figures
            dynamodb.delete_table(TableName=spec.physical_name(stage))


def run_once(endpoints: Endpoints, workload: Workload, profiler: cProfile.Profile | None = None) -> Run:
    """One measured pass of the workload through the handler, on fresh tables; checked before it is returned."""
    stage = "b" + secrets.token_hex(5)
    container = Container(bench_settings(endpoints, stage))
    dynamodb = container.aws.dynamodb
    create_tables(dynamodb, stage)
    try:
        now = datetime.now(UTC)
        for tenant_id in workload.tenants:
            container.tenants.create(
                Tenant(tenant_id=tenant_id, name=f"Bench {tenant_id}", email=f"{tenant_id}@bench.test", created_at=now)
            )
        queue_arn = f"arn:aws:sqs:{container.settings.region}:{ACCOUNT}:{resources.USAGE_QUEUE.physical_name(stage)}"
        batches = sqs_batches(workload.records, queue_arn)
        metering.configure(container)
        calls = DynamoDBCalls().attach(dynamodb)
        try:
            batch_seconds, failed = _deliver(batches, profiler)
        finally:
            calls.detach()
        if failed:
            raise BenchmarkFailed(
                f"{workload.scenario}: the handler reported {len(failed)} failed records (first: {failed[:3]}); "
                "see the log above for the reason"
            )
        verified = verify(container, workload)
    finally:
        _delete_tables(dynamodb, stage)
    batch_records = [len(batch["Records"]) for batch in batches]
    return Run(batch_seconds=batch_seconds, batch_records=batch_records, calls=calls, verified=verified)


def _deliver(batches: list[dict[str, Any]], profiler: cProfile.Profile | None) -> tuple[list[float], list[str]]:
    """Call the handler on each batch in turn; returns the seconds of each call and the records reported failed."""
    failed: list[str] = []
    seconds: list[float] = []
    # Powertools prints each invocation's metrics (EMF) to stdout, where Lambda hands them to CloudWatch.
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        if profiler is not None:
            profiler.enable()
        for event in batches:
            began = time.perf_counter()
            response = metering.handler(event, LocalLambdaContext("metering"))
            seconds.append(time.perf_counter() - began)
            failed += [failure["itemIdentifier"] for failure in response.get("batchItemFailures", [])]
        if profiler is not None:
            profiler.disable()
    return seconds, failed


# --- a scenario, a backend --------------------------------------------------------------------------------------


def summarize(workload: Workload, runs: list[Run]) -> dict[str, Any]:
    """Median throughput over the runs; call counts from the last (the workload is the same every time)."""
    calls = runs[-1].calls
    records = len(workload.records)
    per_event = records or 1

    def ratio(count: int) -> float:
        return round(count / per_event, 4)

    throughput = [run.events_per_second for run in runs]
    write_requests_per_event = ratio(calls.write_requests)
    items_written_per_event = ratio(calls.items_written)
    median_eps = statistics.median(throughput)
    return {
        "records": records,
        "unique_events": len(workload.unique),
        "tenants": len(workload.tenants),
        "models": len({e.model for e in workload.unique}),
        "batches": -(-records // BATCH_SIZE),
        "events_per_second": round(median_eps, 1),
        "events_per_second_runs": [round(x, 1) for x in throughput],
        "seconds_median": round(statistics.median(run.seconds for run in runs), 3),
        "events_per_second_first_tenth": round(
            statistics.median(run.tenth_events_per_second(False) for run in runs), 1
        ),
        "events_per_second_last_tenth": round(statistics.median(run.tenth_events_per_second(True) for run in runs), 1),
        "ms_per_batch_median": round(1000 * BATCH_SIZE / median_eps, 2),
        "write_requests_per_event": write_requests_per_event,
        "items_written_per_event": items_written_per_event,
        "condition_checks_per_event": ratio(calls.items["condition_check"]),
        "reads_per_event": ratio(calls.read_requests),
        "transactions_per_event": ratio(calls.calls["TransactWriteItems"]),
        "cancelled_transactions": calls.errors["TransactionCanceledException"],
        "api_calls": dict(sorted(calls.calls.items())),
        "items": dict(sorted(calls.items.items())),
        "errors": dict(sorted(calls.errors.items())),
        "http_attempts": calls.http_attempts,
        "http_retries": calls.http_attempts - sum(calls.calls.values()),
        "verified": runs[-1].verified,
        "goals_met": {
            "events_per_second": median_eps >= GOAL_EVENTS_PER_SECOND,
            "write_requests_per_event": write_requests_per_event <= GOAL_WRITES_PER_EVENT,
            "items_written_per_event": items_written_per_event <= GOAL_WRITES_PER_EVENT,
        },
    }


def measure_backend(
    name: str,
    endpoints: Endpoints,
    events: int = DEFAULT_EVENTS,
    tenants: int = DEFAULT_TENANTS,
    repetitions: int = DEFAULT_REPETITIONS,
    warmup: bool = True,
    scenarios: Sequence[str] = SCENARIOS,
    progress: Callable[[str], None] = print,
) -> dict[str, dict[str, Any]]:
    """Every scenario `repetitions` times on one backend, rounds interleaved so that drift hits all alike."""
    if repetitions < 1:
        raise ValueError("repetitions must be at least 1")
    workloads = {scenario: make_workload(scenario, events, tenants) for scenario in scenarios}
    if warmup:
        warmup_events = max(BATCH_SIZE, round(events * WARMUP_SHARE))
        for scenario in scenarios:
            run = run_once(endpoints, make_workload(scenario, warmup_events, tenants, seed=SEED + 1))
            progress(
                f"[metering] {name}: warm-up {scenario}, {run.records} records, {run.events_per_second:.0f} events/s"
            )
    runs: dict[str, list[Run]] = {scenario: [] for scenario in scenarios}
    for repetition in range(1, repetitions + 1):
        for scenario, workload in workloads.items():
            run = run_once(endpoints, workload)
            runs[scenario].append(run)
            progress(
                f"[metering] {name}: {scenario} {repetition}/{repetitions}: {run.records} records in "
                f"{run.seconds:.2f} s = {run.events_per_second:.0f} events/s, "
                f"{run.calls.write_requests / run.records:.3f} write requests and "
                f"{run.calls.items_written / run.records:.3f} items written per event; counters verified"
            )
    return {scenario: summarize(workloads[scenario], runs[scenario]) for scenario in scenarios}


@contextmanager
def moto_backend() -> Iterator[Endpoints]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request at INFO
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield Endpoints(aws=f"http://{host}:{port}")
    finally:
        server.stop()


@contextmanager
def dynamodb_local_backend() -> Iterator[Endpoints]:
    with DynamoDBLocal(jvm_args=DYNAMODB_LOCAL_JVM_ARGS) as server:
        yield Endpoints(aws=NOWHERE, dynamodb=server.endpoint_url)


BACKEND_FACTORIES: dict[str, Callable[[], contextlib.AbstractContextManager[Endpoints]]] = {
    "moto": moto_backend,
    "dynamodb_local": dynamodb_local_backend,
}


# --- profile ----------------------------------------------------------------------------------------------------


def profile_run(endpoints: Endpoints, workload: Workload, top: int = 20) -> dict[str, Any]:
    """One run under cProfile (this thread only): where the handler's time goes, by package and by function."""
    profiler = cProfile.Profile()
    run = run_once(endpoints, workload, profiler)
    stats = pstats.Stats(profiler)
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values()) or 1.0
    by_area: Counter[str] = Counter()
    for (filename, _line, function), entry in raw.items():
        by_area[_area(filename, function)] += entry[2]
    functions = sorted(raw.items(), key=lambda pair: pair[1][2], reverse=True)[:top]
    cumulative = sorted(raw.items(), key=lambda pair: pair[1][3], reverse=True)[:top]
    phases = {}
    for label, file_suffix, function in PROFILE_PHASES:
        matches = [entry[3] for (f, _, name), entry in raw.items() if f.endswith(file_suffix) and name == function]
        if matches:
            phases[label] = round(max(matches) / total, 3)
    return {
        "scenario": workload.scenario,
        "records": run.records,
        "profiled_seconds": round(run.seconds, 3),
        "share_by_area": {area: round(t / total, 3) for area, t in by_area.most_common()},
        "share_by_phase": phases,
        "top_tottime": [_describe(key, entry) for key, entry in functions],
        "top_cumtime": [_describe(key, entry) for key, entry in cumulative],
    }


# Steps of the handler's work, by the cumulative time of the function that does each (they do not nest).
PROFILE_PHASES = (
    ("HTTP exchange with the server (send, wait, read)", "botocore/httpsession.py", "send"),
    ("botocore: parameter validation", "botocore/validate.py", "validate"),
    ("botocore: request serialization", "botocore/serialize.py", "serialize_to_request"),
    ("botocore: request signing", "botocore/signers.py", "sign"),
    ("botocore: endpoint resolution", "botocore/regions.py", "construct_endpoint"),
    ("botocore: response parsing", "botocore/parsers.py", "parse"),
    ("usage events: JSON to UsageEvent (pydantic)", "shared/metering.py", "parse_event"),
    ("transaction items: building them", "shared/data/usage.py", "_group_items"),
    (
        "Powertools metrics: flushing EMF",
        "aws_lambda_powertools/metrics/provider/cloudwatch_emf/cloudwatch.py",
        "flush_metrics",
    ),
)


def _area(filename: str, function: str) -> str:
    if filename == "~":  # built-ins: name them by what they wait for
        if any(word in function for word in ("recv", "send", "connect", "select", "poll", "socket")):
            return "socket I/O (waiting for the server)"
        if "acquire" in function or "lock" in function:
            return "locks (GIL hand-off to moto's thread)"
        return "builtins"
    path = Path(filename)
    parts = path.parts
    if "site-packages" in parts:
        return parts[parts.index("site-packages") + 1].split(".")[0]
    try:
        relative = path.resolve().relative_to(REPO_ROOT)
        return f"project: {relative.parts[0]}/"
    except ValueError:
        return "stdlib: " + path.stem


def _describe(key: tuple[str, int, str], entry: tuple[Any, ...]) -> str:
    filename, line, function = key
    where = function if filename == "~" else f"{_short(filename)}:{line}({function})"
    return f"{entry[3]:.3f}s cum {entry[2]:.3f}s own {entry[1]} calls  {where}"


def _short(filename: str) -> str:
    parts = Path(filename).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1 :])
    with contextlib.suppress(ValueError):
        return str(Path(filename).resolve().relative_to(REPO_ROOT))
    return "/".join(parts[-2:])


# --- the report -------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "boto3": boto3.__version__,
        "moto": moto.__version__,
    }
    with contextlib.suppress(Exception):
        info["dynamodb_local"] = find_jar().parent.name
    return info


def backend_events(name: str, events: int, moto_events: int) -> int:
    """Records per run on a backend: moto's share is capped (see DEFAULT_MOTO_EVENTS)."""
    return min(events, moto_events) if name == "moto" else events


def run_benchmark(
    events: int = DEFAULT_EVENTS,
    tenants: int = DEFAULT_TENANTS,
    repetitions: int = DEFAULT_REPETITIONS,
    backends: Sequence[str] = BACKENDS,
    moto_events: int = DEFAULT_MOTO_EVENTS,
    warmup: bool = True,
    profile: bool = False,
    out: Path = RESULTS_FILE,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every scenario on every backend; write and return the report. Raises BenchmarkFailed on a miscount."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    results: dict[str, Any] = {}
    profiles: dict[str, Any] = {}
    with fake_aws_credentials():
        for name in backends:
            records = backend_events(name, events, moto_events)
            progress(f"[metering] {name}: starting ({records} records per run)")
            with BACKEND_FACTORIES[name]() as endpoints:
                results[name] = measure_backend(
                    name, endpoints, records, tenants, repetitions, warmup, progress=progress
                )
                if profile:
                    progress(f"[metering] {name}: one more spread run under cProfile (not in the figures)")
                    profiles[name] = profile_run(endpoints, make_workload("spread", records, tenants))
    report: dict[str, Any] = {
        "benchmark": "metering",
        "machine": machine(),
        "events": events,
        "events_by_backend": {name: backend_events(name, events, moto_events) for name in backends},
        "tenants": tenants,
        "models": len(MODELS),
        "batch_size": BATCH_SIZE,
        "repetitions": repetitions,
        "duplicate_share": DUPLICATE_SHARE,
        "results": results,
        "goals": {"events_per_second": GOAL_EVENTS_PER_SECOND, "writes_per_event": GOAL_WRITES_PER_EVENT},
        "notes": NOTES,
    }
    if profiles:
        report["profiles"] = profiles
    write_report(out, report)
    return report


def summary_table(report: dict[str, Any]) -> str:
    header = (
        f"{'backend':<15} {'scenario':<12} {'events/s':>9} {'write req/ev':>13} {'items/ev':>9} "
        f"{'cond chk/ev':>12} {'reads/ev':>9} {'cancelled tx':>13}"
    )
    lines = [header, "-" * len(header)]
    for backend, scenarios in report["results"].items():
        for scenario, r in scenarios.items():
            lines.append(
                f"{backend:<15} {scenario:<12} {r['events_per_second']:>9.0f} {r['write_requests_per_event']:>13.3f} "
                f"{r['items_written_per_event']:>9.3f} {r['condition_checks_per_event']:>12.3f} "
                f"{r['reads_per_event']:>9.4f} {r['cancelled_transactions']:>13}"
            )
    goals = report["goals"]
    lines.append(
        f"goals: >= {goals['events_per_second']} events/s, <= {goals['writes_per_event']} writes per event "
        f"(medians of {report['repetitions']} runs; records per run {report['events_by_backend']}; "
        f"batches of {report['batch_size']})"
    )
    return "\n".join(lines)


def print_profiles(report: dict[str, Any]) -> None:
    for backend, prof in report.get("profiles", {}).items():
        print(f"\nWhere the time goes, {backend} ({prof['records']} records, {prof['profiled_seconds']} s profiled):")
        for area, share in prof["share_by_area"].items():
            if share >= 0.01:
                print(f"  {share:6.1%}  {area}")
        print("  by step:")
        for phase, share in prof["share_by_phase"].items():
            print(f"  {share:6.1%}  {phase}")
        print("  top functions by own time:")
        for line in prof["top_tottime"][:12]:
            print(f"    {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS, help="records per scenario and run")
    parser.add_argument(
        "--moto-events", type=int, default=DEFAULT_MOTO_EVENTS, help="at most this many on moto (its cost grows)"
    )
    parser.add_argument("--tenants", type=int, default=DEFAULT_TENANTS, help="tenants of the spread scenarios")
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS, help="runs per scenario")
    parser.add_argument("--no-warmup", action="store_true", help="skip the unrecorded warm-up runs")
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--profile", action="store_true", help="add one cProfile'd run per backend to the report")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="where the JSON report goes")
    args = parser.parse_args(argv)
    try:
        report = run_benchmark(
            events=args.events,
            tenants=args.tenants,
            repetitions=args.repetitions,
            backends=args.backends,
            moto_events=args.moto_events,
            warmup=not args.no_warmup,
            profile=args.profile,
            out=args.out,
        )
    except BenchmarkFailed as error:
        print(f"[metering] FAILED: {error}", file=sys.stderr)
        return 1
    print()
    print(summary_table(report))
    print_profiles(report)
    print(f"Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
