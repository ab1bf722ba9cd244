"""The cost model: what each stage costs idle, what a million chats cost without model tokens, and the cluster.

    python -m bench.cost [--out bench/results/cost.json]

It synthesizes dev and prod (app.py, into a scratch folder) and reads what bills from the templates: alarms and
the metrics each watches (an anomaly-detection alarm bills as three), composite alarms, dashboards, secrets,
SnapStart and provisioned concurrency with the memory they hold, queues Lambda polls, schedules and their
invocations. Per chat it reads `bench/results/warm.json` (the function's own time and its AWS calls and
DynamoDB items) and `bench/results/metering.json` (the metering function's writes per usage event). Every price
is a named line in PRICES with its source; none is fetched (no internet here), so check them against AWS's
pages before quoting a bill.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._report import write_report

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "results"
RESULTS_FILE = RESULTS / "cost.json"
STAGES = ("dev", "prod")
GOALS = {"dev_idle_usd_per_month": 3.0, "prod_idle_usd_per_month": 10.0, "usd_per_million_chats": 4.0}
GOAL_CLUSTER_TIMES_PROD_IDLE = 30
SECONDS_PER_MONTH = 30 * 24 * 3600
HOURS_PER_MONTH = 730
# The chat memories whose prod cost is reported beside the stage's own (decision 19's choice).
CHAT_MEMORY_CHOICES_MB = (1024, 1769, 3072)

# AWS list prices, us-east-1, on-demand, as published in 2025 (AWS's pricing pages for each service); the
# stages' region (eu-central-1) is about 10-20% higher for most lines. Not fetched: no internet here.
PRICES_AS_OF = "AWS list prices, us-east-1, 2025; not re-checked from here (no internet)"
PRICES: dict[str, float] = {
    "alarm_metric_month": 0.10,  # standard resolution, per metric an alarm watches
    "composite_alarm_month": 0.50,
    "dashboard_month": 3.00,  # each, beyond the account's first 3 (not counted here: they may be used already)
    "secret_month": 0.40,
    "snapstart_cache_gb_second": 0.0000015046,  # Python: per GB of memory, while a version is cached
    "provisioned_gb_second_arm": 0.0000033334,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second_arm": 0.0000133334,
    "sqs_request": 0.40 / 1e6,
    "http_api_request": 1.00 / 1e6,
    "dynamodb_write_request_unit": 0.625 / 1e6,  # on demand
    "dynamodb_read_request_unit": 0.125 / 1e6,
    "logs_ingested_gb": 0.50,
    "xray_trace_recorded": 5.00 / 1e6,
    "scheduler_invocation": 1.00 / 1e6,  # after 14M free a month: idle schedules stay inside it
}
# Lambda polls each SQS queue it reads with long polls of 20 s from five pollers while it is idle.
IDLE_POLLERS_PER_QUEUE = 5
LONG_POLL_SECONDS = 20
# What a chat logs besides the function's own lines (measured by bench/warm.py as `log_bytes_per_chat`): Lambda's
# START/END/REPORT lines (~350 bytes with X-Ray's trace id), and the API's JSON access line (stacks/api.py's
# ACCESS_LOG_FIELDS, ~450 bytes with a browser's user agent).
PLATFORM_LOG_BYTES_PER_CHAT = 350
ACCESS_LOG_BYTES_PER_CHAT = 450
XRAY_SAMPLED_SHARE = 0.05  # X-Ray's default rule past its first request a second
USAGE_EVENTS_PER_CHAT = 2  # the answer's tokens and the question's embedding
# The cluster it replaces (../shared/seeds: EKS, the API's 2-10 replicas, Postgres with pgvector and Redis on
# volumes in the cluster, Prometheus and Grafana, an ingress load balancer), at its smallest: two nodes.
CLUSTER: dict[str, float] = {
    "eks_control_plane": 0.10 * HOURS_PER_MONTH,
    "nodes_2x_t3_medium": 2 * 0.0416 * HOURS_PER_MONTH,
    "postgres_redis_prometheus_volumes_3x_20gb_gp3": 3 * 20 * 0.08,
    "application_load_balancer": 0.0225 * HOURS_PER_MONTH + 0.008 * HOURS_PER_MONTH,  # the hour, one LCU
    "nat_gateway_for_private_nodes": 0.045 * HOURS_PER_MONTH,
}


@dataclass(frozen=True)
class Stage:
    name: str
    resources: dict[str, dict[str, Any]]

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in self.resources.values() if r.get("Type") == kind]


def synthesized(stage: str, outdir: Path = REPO_ROOT / "cdk.out") -> Stage:
    """Every resource of the stage's templates, synthesized (as `make synth` does, into cdk.out/)."""
    subprocess.run([sys.executable, "app.py", "--stage", stage], cwd=REPO_ROOT, check=True, capture_output=True)
    resources: dict[str, dict[str, Any]] = {}
    for template in outdir.glob(f"DocuChat-{stage}-*.template.json"):
        resources |= json.loads(template.read_text()).get("Resources", {})
    return Stage(stage, resources)


def alarm_metrics(alarm: dict[str, Any]) -> int:
    """Metrics an alarm bills for: one, each metric of a math alarm, three for an anomaly band."""
    props = alarm["Properties"]
    if "Metrics" not in props:
        return 1
    if any("ANOMALY_DETECTION_BAND" in str(m.get("Expression", "")) for m in props["Metrics"]):
        return 3
    return max(1, sum(1 for m in props["Metrics"] if "MetricStat" in m))


def _schedule_invocations_per_month(expression: str) -> float:
    rate = re.match(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", expression)
    if rate:
        every = int(rate.group(1)) * {"minute": 60, "hour": 3600, "day": 86400}[rate.group(2).rstrip("s")]
        return SECONDS_PER_MONTH / every
    return 30.0  # cron(...): the stacks' crons run daily


def idle_lines(stage: Stage) -> dict[str, float]:
    alarms = stage.of_type("AWS::CloudWatch::Alarm")
    functions = {r["Properties"].get("FunctionName"): r["Properties"] for r in stage.of_type("AWS::Lambda::Function")}
    snapstart_gb = sum(
        p.get("MemorySize", 128) / 1024
        for p in functions.values()
        if (p.get("SnapStart") or {}).get("ApplyOn") == "PublishedVersions"
    )
    provisioned_gb = 0.0
    for alias in stage.of_type("AWS::Lambda::Alias"):
        config = alias["Properties"].get("ProvisionedConcurrencyConfig")
        if config:
            # The alias names its function by a reference; the chat function's memory is the one that has one.
            memory = max((p.get("MemorySize", 128) for p in functions.values()), default=128)
            provisioned_gb += config["ProvisionedConcurrentExecutions"] * memory / 1024
    # SQS mappings name a queue and no starting position (streams have one).
    polled_queues = sum(
        1 for m in stage.of_type("AWS::Lambda::EventSourceMapping") if "StartingPosition" not in m["Properties"]
    )
    polls = polled_queues * IDLE_POLLERS_PER_QUEUE * SECONDS_PER_MONTH / LONG_POLL_SECONDS
    schedule_runs = sum(
        _schedule_invocations_per_month(str(s["Properties"].get("ScheduleExpression", "")))
        for s in stage.of_type("AWS::Scheduler::Schedule")
    )
    return {
        "alarms": sum(alarm_metrics(a) for a in alarms) * PRICES["alarm_metric_month"],
        "composite_alarms": len(stage.of_type("AWS::CloudWatch::CompositeAlarm")) * PRICES["composite_alarm_month"],
        "dashboards": len(stage.of_type("AWS::CloudWatch::Dashboard")) * PRICES["dashboard_month"],
        "secrets": len(stage.of_type("AWS::SecretsManager::Secret")) * PRICES["secret_month"],
        "snapstart_cache": snapstart_gb * SECONDS_PER_MONTH * PRICES["snapstart_cache_gb_second"],
        "provisioned_concurrency": provisioned_gb * SECONDS_PER_MONTH * PRICES["provisioned_gb_second_arm"],
        "idle_sqs_polling": polls * PRICES["sqs_request"],
        # Each scheduled run: a Lambda invocation of ~0.5 s at 512 MB (the sweep and the outbox drain find nothing).
        "scheduled_runs": schedule_runs
        * (PRICES["lambda_request"] + 0.5 * 0.5 * PRICES["lambda_gb_second_arm"] + PRICES["scheduler_invocation"]),
        # Empty tables, an empty bucket and little log data cost cents; a tenant's data is its own line of cost.
        "storage": 0.0,
    }


def log_bytes_per_chat(warm: dict[str, Any]) -> int:
    """The function's own log lines as bench/warm.py measured them, and Lambda's and the API's lines."""
    return int(warm["log_bytes_per_chat"]) + PLATFORM_LOG_BYTES_PER_CHAT + ACCESS_LOG_BYTES_PER_CHAT


def per_million_chats(stage: Stage, warm: dict[str, Any], metering: dict[str, Any]) -> dict[str, float]:
    functions = [r["Properties"] for r in stage.of_type("AWS::Lambda::Function")]
    chat_memory_gb = next(
        (p.get("MemorySize", 128) / 1024 for p in functions if str(p.get("FunctionName", "")).endswith("-chat")), 1.0
    )
    calls = warm["aws_calls_by_operation"]
    items = warm.get("dynamodb_items_per_chat", {})
    # Writes: a PutItem or UpdateItem of an item under 1 KB is 1 unit, and so is each item of a batch write; each
    # item of a transaction 2. Reads: a consistent GetItem 1 unit, a batch's eventually consistent reads half a
    # unit a key (items under 4 KB). A conversation's answer and the cached answer are about 1 KB each.
    writes = (
        calls.get("dynamodb.UpdateItem", 0)
        + calls.get("dynamodb.PutItem", 0)
        + items.get("batch_write_items", 0)
        + 2 * items.get("transaction_write_items", 0)
    )
    reads = calls.get("dynamodb.GetItem", 0) + 0.5 * items.get("batch_get_keys", 0)
    spread = metering["results"]["dynamodb_local"]["spread"]
    metering_writes = 2 * spread["items_written_per_event"] * USAGE_EVENTS_PER_CHAT  # all transactional
    million = 1e6
    return {
        "api_gateway": million * PRICES["http_api_request"],
        "chat_function_requests": million * PRICES["lambda_request"],
        "chat_function_duration": million * warm["p50_ms"] / 1000 * chat_memory_gb * PRICES["lambda_gb_second_arm"],
        "dynamodb_chat": million
        * (writes * PRICES["dynamodb_write_request_unit"] + reads * PRICES["dynamodb_read_request_unit"]),
        # One send a chat; Lambda receives and deletes them a batch at a time.
        "sqs_usage_send_receive_delete": million
        * (calls.get("sqs.SendMessageBatch", 1) + 2 / metering["batch_size"])
        * PRICES["sqs_request"],
        # A batch of usage events an invocation; ~50 ms of a 512 MB function a chat (bench/metering.py's pace).
        "metering_function": million
        * (PRICES["lambda_request"] / metering["batch_size"] + 0.05 * 0.5 * PRICES["lambda_gb_second_arm"]),
        "dynamodb_metering": million * metering_writes * PRICES["dynamodb_write_request_unit"],
        "logs": million * log_bytes_per_chat(warm) / 1e9 * PRICES["logs_ingested_gb"],
        "xray": million * XRAY_SAMPLED_SHARE * PRICES["xray_trace_recorded"],
    }


def with_chat_memory(stage: Stage, memory_mb: int) -> Stage:
    """The stage as it would be with the chat function at `memory_mb` (cdk.json: functions.chat.memory_mb)."""
    resources = copy.deepcopy(stage.resources)
    for resource in resources.values():
        props = resource.get("Properties", {})
        if resource.get("Type") == "AWS::Lambda::Function" and str(props.get("FunctionName", "")).endswith("-chat"):
            props["MemorySize"] = memory_mb
    return Stage(stage.name, resources)


def chat_memory_choices(stage: Stage, warm: dict[str, Any], metering: dict[str, Any]) -> dict[str, Any]:
    """Prod's idle month and a million chats at other chat memories: SnapStart caches the whole memory, and the
    chat function's duration bills by it. Less memory holds smaller tenants (decision 11: ~1.9 KB a row)."""
    choices = {}
    for memory_mb in CHAT_MEMORY_CHOICES_MB:
        variant = with_chat_memory(stage, memory_mb)
        choices[str(memory_mb)] = {
            "idle_usd_per_month": round(sum(idle_lines(variant).values()), 2),
            "usd_per_million_chats": round(sum(per_million_chats(variant, warm, metering).values()), 2),
        }
    return choices


def rounded(lines: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 3) for name, value in lines.items()}


def run(out: Path | None) -> dict[str, Any]:
    warm = json.loads((RESULTS / "warm.json").read_text())
    metering = json.loads((RESULTS / "metering.json").read_text())
    stages: dict[str, Any] = {}
    for name in STAGES:
        stage = synthesized(name)
        idle, chats = idle_lines(stage), per_million_chats(stage, warm, metering)
        stages[name] = {
            "idle_usd_per_month": round(sum(idle.values()), 2),
            "idle_lines": rounded(idle),
            "usd_per_million_chats": round(sum(chats.values()), 2),
            "per_million_chats_lines": rounded(chats),
        }
        if name == "prod":
            stages[name]["at_other_chat_memory_mb"] = chat_memory_choices(stage, warm, metering)
    cluster = round(sum(CLUSTER.values()), 2)
    prod_idle = stages["prod"]["idle_usd_per_month"]
    report = {
        "benchmark": "cost",
        "prices": {"as_of": PRICES_AS_OF, **PRICES},
        "assumptions": {
            "idle_pollers_per_queue": IDLE_POLLERS_PER_QUEUE,
            "log_bytes_per_chat": log_bytes_per_chat(warm),
            "xray_sampled_share": XRAY_SAMPLED_SHARE,
            "usage_events_per_chat": USAGE_EVENTS_PER_CHAT,
            "chat_duration": "bench/results/warm.json p50_ms: the function's own time, not waiting for the model",
        },
        "stages": stages,
        "cluster_idle_usd_per_month": cluster,
        "cluster_lines": {"as_of": PRICES_AS_OF, **rounded(CLUSTER)},
        "cluster_times_prod_idle": round(cluster / prod_idle, 1) if prod_idle else None,
        "goals": {**GOALS, "cluster_times_prod_idle": GOAL_CLUSTER_TIMES_PROD_IDLE},
    }
    if out is not None:
        write_report(out, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    report = run(parser.parse_args(argv).out)
    for name, stage in report["stages"].items():
        print(f"{name}: idle ${stage['idle_usd_per_month']}/month, ${stage['usd_per_million_chats']} per 1M chats")
        for line, value in stage["idle_lines"].items():
            print(f"    idle  {line:<26} ${value}")
        for line, value in stage["per_million_chats_lines"].items():
            print(f"    chats {line:<26} ${value}")
    print(f"cluster idle ${report['cluster_idle_usd_per_month']}/month: {report['cluster_times_prod_idle']}x prod idle")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
