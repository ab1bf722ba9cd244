"""The metering benchmark's machinery works end to end and checks what it measures.

Nothing here is timed: the figures come from `make bench`.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest

from bench.metering import (
    BATCH_SIZE,
    NOWHERE,
    SCENARIOS,
    BenchmarkFailed,
    Endpoints,
    bench_settings,
    make_workload,
    measure_backend,
    run_benchmark,
    sqs_batches,
    verify,
)
from functions.metering import handler as metering
from local.bootstrap import create_tables
from local.lambda_runtime import LocalLambdaContext
from shared.container import Container
from shared.ids import utc_now
from shared.models import Tenant
from shared.resources import USAGE_QUEUE

SCENARIO_FIELDS = {
    "records",
    "unique_events",
    "tenants",
    "batches",
    "events_per_second",
    "events_per_second_runs",
    "write_requests_per_event",
    "items_written_per_event",
    "condition_checks_per_event",
    "reads_per_event",
    "transactions_per_event",
    "cancelled_transactions",
    "api_calls",
    "items",
    "verified",
    "goals_met",
}
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:docuchat-bench-usage"


def test_a_small_run_on_moto_writes_the_report_with_every_scenario_verified(tmp_path: Path) -> None:
    # Given an empty results folder
    out = tmp_path / "results" / "metering.json"
    progress: list[str] = []

    # When the benchmark runs a few batches of records per scenario, once, on moto only
    records = 2 * BATCH_SIZE + 50
    returned = run_benchmark(
        events=records, tenants=5, repetitions=1, backends=["moto"], warmup=False, out=out, progress=progress.append
    )

    # Then the report on disk is the one returned, with every field
    report = json.loads(out.read_text())
    assert report == returned
    assert report["benchmark"] == "metering"
    assert set(report["machine"]) >= {"cpus", "python", "moto", "boto3"}
    assert report["events"] == records and report["events_by_backend"] == {"moto": records}
    assert report["batch_size"] == BATCH_SIZE == USAGE_QUEUE.batch_size
    assert report["goals"] == {"events_per_second": 1000, "writes_per_event": 1.1}
    assert report["notes"]
    results = report["results"]["moto"]
    assert set(results) == set(SCENARIOS)
    for scenario, result in results.items():
        assert set(result) >= SCENARIO_FIELDS, scenario
        assert result["events_per_second"] > 0, scenario
        # And the counters held exactly the unique events' tokens (the benchmark checked them)
        workload = make_workload(scenario, records, tenants=5)
        assert result["verified"] == {
            "tenants": len(workload.tenants),
            "events": len(workload.unique),
            "tokens": sum(e.total_tokens for e in workload.unique),
        }, scenario
        # And the per-event figures are the counted calls and items over the records delivered
        calls, items = result["api_calls"], result["items"]
        assert (
            result["write_requests_per_event"]
            == result["transactions_per_event"]
            == calls["TransactWriteItems"] / records
        )
        assert result["items_written_per_event"] == (items["put"] + items["update"]) / records
        assert result["condition_checks_per_event"] == items["condition_check"] / records
        assert result["reads_per_event"] > 0  # the tenant lookups
    assert len([line for line in progress if "counters verified" in line]) == len(SCENARIOS)

    # And the scenarios are what they say
    spread, busy, duplicates = results["spread"], results["busy_tenant"], results["duplicates"]
    assert (spread["records"], spread["unique_events"], spread["tenants"]) == (records, records, 5)
    assert spread["items"]["put"] == records and spread["cancelled_transactions"] == 0  # one claim per event
    assert busy["tenants"] == 1
    assert busy["api_calls"]["TransactWriteItems"] <= 2 * busy["batches"]  # one transaction per model and batch
    assert duplicates["records"] == records and duplicates["unique_events"] == records * 9 // 10
    assert duplicates["cancelled_transactions"] > 0  # repeats in later batches meet their claims


def test_the_check_fails_loudly_when_the_counters_miss_events(moto_aws: Any) -> None:
    # Given fresh tables, the workload's tenants, and only the first batch of its records metered
    workload = make_workload("spread", BATCH_SIZE + 50, tenants=3)
    stage = "b" + secrets.token_hex(5)
    container = Container(bench_settings(Endpoints(aws=moto_aws.endpoint_url), stage))
    create_tables(container.aws.dynamodb, stage)
    for tenant_id in workload.tenants:
        container.tenants.create(Tenant(tenant_id=tenant_id, name="T", email="t@bench.test", created_at=utc_now()))
    metering.configure(container)
    first_batch = sqs_batches(workload.records, QUEUE_ARN)[0]
    assert metering.handler(first_batch, LocalLambdaContext("metering")) == {"batchItemFailures": []}

    # When the benchmark checks the counters, Then it stops and names what is missing
    with pytest.raises(BenchmarkFailed, match=r"do not match the unique events:\n  tenant t[0-9a-f]+: counted"):
        verify(container, workload)


@pytest.mark.dynamodb_local
def test_dynamodb_local_counts_the_same_calls_as_moto(moto_aws: Any, dynamodb_local: Any) -> None:
    # Given the same small workloads on both backends
    scenarios = ("spread", "duplicates")
    kwargs: dict[str, Any] = {"events": 60, "tenants": 4, "repetitions": 1, "warmup": False, "scenarios": scenarios}

    # When each runs them
    on_moto = measure_backend("moto", Endpoints(aws=moto_aws.endpoint_url), progress=lambda _: None, **kwargs)
    on_local = measure_backend(
        "dynamodb_local",
        Endpoints(aws=NOWHERE, dynamodb=dynamodb_local.endpoint_url),
        progress=lambda _: None,
        **kwargs,
    )

    # Then both verified the counters, and made the same DynamoDB calls with the same items
    for scenario in scenarios:
        assert on_local[scenario]["verified"] == on_moto[scenario]["verified"], scenario
        for figure in ("api_calls", "items", "cancelled_transactions", "write_requests_per_event"):
            assert on_local[scenario][figure] == on_moto[scenario][figure], (scenario, figure)
