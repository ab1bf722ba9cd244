"""Cold start of the chat function, against a naive handler (see ARCHITECTURE.md, Performance).

    python -m bench.cold_start [--runs 7] [--warmup 1] [--out bench/results/cold_start.json]

Setup (not timed): moto's server and FakeOpenAI on 127.0.0.1, the stage's resources, one tenant with an API
key and one small ready document. Timed: a fresh Python process (bench._cold_runner) with the function's
environment imports a handler module and answers one `POST /v1/chat` API Gateway HTTP API event, then exits.
Wall time runs from spawn to exit (interpreter start, imports, first request, shutdown); the child reports its
import and first-request times, and its own peak RSS (VmHWM). Ours (functions.chat.handler) and the naive one
(bench.naive_handler) alternate, so drift in the machine's load hits both alike.

Each child sees what Lambda would give it (`LambdaLikePath`): only the layer's distributions (requirements.txt,
with their dependencies) and the runtime's boto3, not this machine's development packages (which change what
some libraries import: openai loads aiohttp when it is installed), and the bytecode its deployment has. Ours
is deployed with bytecode for Lambda's Python (layers/bytecode.py); the naive handler as a Docker-free build
makes it, without (pip's cross-platform installs cannot compile), so in Lambda its every cold start compiles
every module. `ours_without_bytecode` runs our handler packaged like the naive one, to show what the lazy
imports alone are worth.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from moto.server import ThreadedMotoServer

from bench._cold_runner import RESULT_MARKER
from bench._report import write_report
from layers.requirements import lambda_distributions
from local.bootstrap import create_all
from local.fake_openai import FakeOpenAI
from local.lambda_runtime import http_api_event
from shared.access.keys import issue_key
from shared.container import Container
from shared.data.aws import AwsClients
from shared.ids import new_id, utc_now
from shared.ingestion import IngestOutcome, Upload
from shared.models import Principal, Tenant
from shared.settings import Settings
from stacks.stage_config import load_stage

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "cold_start.json"
OURS = "functions.chat.handler"
NAIVE = "bench.naive_handler"
# Where the repository's own modules come from in the child, as /var/task does in Lambda.
CODE_PACKAGES = ("functions", "shared", "bench", "local", "layers")
RUNNER = "bench._cold_runner"
GOAL_RATIO = 0.4
DEFAULT_RUNS = 7
CHILD_TIMEOUT_SECONDS = 120
STAGE = "bench"
SENDER = "billing@docuchat.bench"
# Never real AWS: moto accepts any credentials.
FAKE_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
INHERITED_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")
# What Lambda's runtime sets in every function's environment, which libraries read to take their Lambda paths:
# without LAMBDA_TASK_ROOT the X-Ray SDK builds a sampler that polls a local daemon, and a botocore client for it
# (~100 ms of every child's import, ours and naive alike, that no function in Lambda pays).
LAMBDA_RUNTIME_ENV = {
    "LAMBDA_TASK_ROOT": str(REPO_ROOT),  # the function's code, as /var/task is in Lambda
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_LAMBDA_FUNCTION_NAME": f"docuchat-{STAGE}-chat",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(load_stage("prod").functions["chat"].memory_mb),
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
}
DOCUMENT_TITLE = "Support handbook"
DOCUMENT_TEXT = """# Support hours
Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help.

# Refunds
Refunds are accepted within 14 days of purchase when the product is unused.

# Shipping
Orders ship from Tehran within two working days; tracking numbers arrive by email."""
QUESTION = "When is the support line open?"

NOTES = (
    "Each sample is a fresh `python -m bench._cold_runner` process: interpreter start, import of the handler "
    "module, one POST /v1/chat (API Gateway HTTP API v2 event, RAG over one document, OpenAI client against a "
    "local FakeOpenAI, DynamoDB/SQS on moto's server over loopback), exit. Wall time (median_ms, ratio_to_exit) "
    "is spawn to exit; to_answer_ms (ratio) is spawn to response ready (one system-wide monotonic clock); the "
    "difference is interpreter teardown (GC over ~150k objects), which Lambda never pays: it freezes the process "
    "instead. Peak RSS is the child's own VmHWM. Ours and naive alternate after warm-ups. Same app, services and "
    "environment for both (prod stage settings, and the variables Lambda's runtime sets, LAMBDA_TASK_ROOT and "
    "others, so the X-Ray SDK takes its Lambda path; POWERTOOLS_TRACE_DISABLED=true as no X-Ray daemon runs "
    "locally). "
    "Each child imports only the layer's distributions and boto3 (python -S, a folder of links to them), with "
    "the bytecode its deployment has (PYTHONPYCACHEPREFIX): ours with bytecode for every module, as our layer "
    "and bundle ship it; naive and ours_without_bytecode with the standard library's alone, so they compile "
    "the rest at import, as Lambda does for a layer without bytecode. Ours defers openai, JWT and httpx to "
    "first use and builds AWS clients on first use; naive imports everything and builds its clients at import. "
    "Prod adds SnapStart, not measured here."
)


@dataclass(frozen=True)
class Backend:
    """What the functions talk to during the benchmark, and the key a tenant calls with."""

    function_env: dict[str, str]
    api_key: str


@dataclass(frozen=True)
class Sample:
    status: int
    wall_ms: float
    to_answer_ms: float
    import_ms: float
    first_request_ms: float
    peak_rss_mb: float


@dataclass(frozen=True)
class Deployment:
    """A handler as one deployment has it: its module, and where the child finds its bytecode."""

    handler_module: str
    pycache_prefix: Path


class LambdaLikePath:
    """What a function imports from in Lambda, built from this machine's installed packages (not timed).

    `site` links to the layer's distributions and the runtime's boto3, nothing else. `all_bytecode` holds
    bytecode for the standard library, those and our code (a deployment that ships it); `stdlib_bytecode` for
    the standard library alone (the runtime's own, with a layer and bundle that ship none).
    """

    # The standard library's tests and GUI are large, and no function imports them.
    _STDLIB_LEFT_OUT = r"[/\\](test|idlelib|tkinter|turtledemo|lib2to3)[/\\]"

    def __init__(self, root: Path) -> None:
        self.site = root / "site"
        self.all_bytecode = root / "bytecode-all"
        self.stdlib_bytecode = root / "bytecode-stdlib"
        self.site.mkdir(parents=True)
        for name in sorted(lambda_distributions()):
            self._link(name)
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        self._compile(self.stdlib_bytecode, [stdlib])
        code = [REPO_ROOT / package for package in CODE_PACKAGES]
        self._compile(self.all_bytecode, [stdlib, *sorted(self.site.iterdir()), *code])

    def environment(self, deployment: Deployment) -> dict[str, str]:
        prefix = str(deployment.pycache_prefix)
        return {"PYTHONPATH": f"{self.site}{os.pathsep}{REPO_ROOT}", "PYTHONPYCACHEPREFIX": prefix}

    def _link(self, distribution: str) -> None:
        try:
            found = metadata.distribution(distribution)
        except metadata.PackageNotFoundError:
            return  # declared for another platform, or provided only in Lambda
        for top in {f.parts[0] for f in found.files or [] if f.parts[0] not in ("..", "__pycache__")}:
            link, target = self.site / top, Path(str(found.locate_file(top)))
            if target.exists() and not link.exists():
                link.symlink_to(target)

    def _compile(self, prefix: Path, paths: list[Path]) -> None:
        command = [sys.executable, "-m", "compileall", "-q", "-j", "0", "-x", self._STDLIB_LEFT_OUT]
        command += ["--invalidation-mode", "unchecked-hash", *map(str, paths)]
        # A few files are for other Pythons and do not compile; compileall goes on past them.
        subprocess.run(command, env={**os.environ, "PYTHONPYCACHEPREFIX": str(prefix)}, capture_output=True)


class ColdStartFailed(RuntimeError):
    """A child process did not answer the chat request with 200."""


@contextmanager
def fake_aws_credentials(extra: dict[str, str] | None = None) -> Iterator[None]:
    """The environment with fake AWS credentials (and `extra`) set; restored on exit."""
    values = {**FAKE_AWS_ENV, **(extra or {})}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def emulated_backend() -> Iterator[Backend]:
    """moto and FakeOpenAI on loopback, provisioned and seeded; stopped on exit."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto logs every request at INFO
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    with fake_aws_credentials(), FakeOpenAI() as fake_openai:
        moto.start()
        try:
            host, port = moto.get_host_and_port()
            endpoint_url = f"http://{host}:{port}"
            config = load_stage("prod").model_copy(update={"name": STAGE, "mail_sender": SENDER})
            settings = Settings(stage=STAGE, aws_endpoint_url=endpoint_url)
            resource_env = create_all(AwsClients(settings), config, SENDER)
            function_env = {
                **config.runtime_environment(),
                **resource_env,
                "DOCUCHAT_AWS_ENDPOINT_URL": endpoint_url,
                "OPENAI_API_KEY": "sk-bench",
                "OPENAI_BASE_URL": fake_openai.base_url,
                "POWERTOOLS_SERVICE_NAME": "docuchat-chat",
                "POWERTOOLS_TRACE_DISABLED": "true",
            }
            with fake_aws_credentials(function_env):  # settings read the environment, as in the function
                api_key = seed_tenant(Settings())
            yield Backend(function_env=function_env, api_key=api_key)
        finally:
            moto.stop()


def seed_tenant(settings: Settings) -> str:
    """A tenant with an API key and one ready document, ingested the service's own way; returns the key."""
    container = Container(settings)
    now = utc_now()
    tenant = Tenant(tenant_id=new_id("t"), name="Bench", email="ops@bench.test", created_at=now)
    container.tenants.create(tenant)
    api_key, record = issue_key(tenant.tenant_id, "bench", now)
    container.tenants.put_key(record)
    principal = Principal(tenant_id=tenant.tenant_id, key_id=record.key_id)
    document = container.document_service.create_inline(principal, DOCUMENT_TITLE, DOCUMENT_TEXT, "text/markdown")
    outcome = container.ingestion.ingest(Upload(document.source_key, "seed"), time_left=lambda: 900.0)
    if outcome != IngestOutcome.READY:
        raise RuntimeError(f"seeding the bench document ended {outcome.value}")
    return api_key


def child_environment(function_env: dict[str, str]) -> dict[str, str]:
    """The function's environment, with what Lambda's runtime adds, and little else: no leaked settings, no bytecode
    written anywhere."""
    inherited = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    return {**inherited, **LAMBDA_RUNTIME_ENV, **FAKE_AWS_ENV, **function_env, "PYTHONDONTWRITEBYTECODE": "1"}


def chat_event(api_key: str, asked: int) -> dict[str, Any]:
    """The question, new to each child (a number no document has): the response cache, which outlives the
    children in moto, misses, so the model answers, as it does a cold start's first question."""
    body = json.dumps({"message": f"{QUESTION} {asked}"})
    return http_api_event("POST", "/v1/chat", body, {"authorization": f"Bearer {api_key}"})


def cold_start(handler_module: str, env: dict[str, str], event: dict[str, Any], workdir: Path) -> Sample:
    """One fresh process: import `handler_module`, answer `event`, exit. Fails loudly unless it answered 200.

    `env` decides what the child can import (PYTHONPATH, with no site-packages: -S) and its bytecode."""
    workdir.mkdir(parents=True, exist_ok=True)
    event_path = workdir / "event.json"
    event_path.write_text(json.dumps(event))
    stdout_path, stderr_path = workdir / "stdout.log", workdir / "stderr.log"
    with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
        spawned_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        process = subprocess.Popen(
            [sys.executable, "-S", "-m", RUNNER, handler_module, str(event_path)],
            cwd=REPO_ROOT,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
        watchdog = threading.Timer(CHILD_TIMEOUT_SECONDS, process.kill)
        watchdog.start()
        try:
            _, status, _ = os.wait4(process.pid, 0)
        finally:
            watchdog.cancel()
        wall_ms = (time.clock_gettime_ns(time.CLOCK_MONOTONIC) - spawned_ns) / 1e6
    process.returncode = os.waitstatus_to_exitcode(status)
    result = _child_result(stdout_path.read_text(errors="replace"))
    if process.returncode != 0 or result is None or result["status"] != 200:
        raise ColdStartFailed(
            f"{handler_module} did not answer 200 (exit code {process.returncode}, result {result}); "
            f"stderr tail:\n{stderr_path.read_text(errors='replace')[-3000:]}"
        )
    return Sample(
        status=result["status"],
        wall_ms=wall_ms,
        to_answer_ms=(result["answered_at_ns"] - spawned_ns) / 1e6,
        import_ms=result["import_ms"],
        first_request_ms=result["first_request_ms"],
        peak_rss_mb=result["peak_rss_kb"] / 1024,
    )


def _child_result(stdout: str) -> dict[str, Any] | None:
    lines = [line for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    return json.loads(lines[-1].removeprefix(RESULT_MARKER)) if lines else None


def summarize(samples: list[Sample]) -> dict[str, Any]:
    walls = [s.wall_ms for s in samples]
    return {
        "median_ms": round(statistics.median(walls), 1),
        "min_ms": round(min(walls), 1),
        "max_ms": round(max(walls), 1),
        "to_answer_ms_median": round(statistics.median(s.to_answer_ms for s in samples), 1),
        "import_ms_median": round(statistics.median(s.import_ms for s in samples), 1),
        "first_request_ms_median": round(statistics.median(s.first_request_ms for s in samples), 1),
        "peak_rss_mb_median": round(statistics.median(s.peak_rss_mb for s in samples), 1),
        "wall_ms": [round(w, 1) for w in walls],
        "statuses": sorted({s.status for s in samples}),
    }


def describe(label: str, sample: Sample) -> str:
    return (
        f"{label}: {sample.wall_ms:.0f} ms to exit, {sample.to_answer_ms:.0f} ms to answer "
        f"(import {sample.import_ms:.0f} ms, "
        f"first request {sample.first_request_ms:.0f} ms, peak RSS {sample.peak_rss_mb:.0f} MB)"
    )


def run_benchmark(
    runs: int = DEFAULT_RUNS, warmup: int = 1, out: Path = RESULTS_FILE, progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """Alternate the deployments `runs` times after `warmup` unrecorded runs of each; write and return the report."""
    if runs < 1 or warmup < 0:
        raise ValueError("runs must be at least 1 and warmup at least 0")
    progress("[cold_start] starting moto and FakeOpenAI, provisioning, seeding a tenant")
    with emulated_backend() as backend, tempfile.TemporaryDirectory(prefix="cold-start-") as scratch:
        progress("[cold_start] linking the layer's packages and compiling the bytecode each deployment ships")
        path = LambdaLikePath(Path(scratch) / "lambda")
        deployments = {
            "ours": Deployment(OURS, path.all_bytecode),
            "naive": Deployment(NAIVE, path.stdlib_bytecode),
            "ours_without_bytecode": Deployment(OURS, path.stdlib_bytecode),
        }
        samples: dict[str, list[Sample]] = {name: [] for name in deployments}
        rounds = [("warm-up", n) for n in range(1, warmup + 1)] + [("run", n) for n in range(1, runs + 1)]
        children = [(phase, n, name) for phase, n in rounds for name in deployments]
        for asked, (phase, n, name) in enumerate(children):
            env = {**child_environment(backend.function_env), **path.environment(deployments[name])}
            event = chat_event(backend.api_key, asked)
            handler_module = deployments[name].handler_module
            sample = cold_start(handler_module, env, event, Path(scratch) / f"{phase}-{n}-{name}")
            total = warmup if phase == "warm-up" else runs
            progress(f"[cold_start] {phase} {n}/{total} " + describe(name, sample))
            if phase == "run":
                samples[name].append(sample)
    report = build_report(samples)
    write_report(out, report)
    return report


def build_report(samples: dict[str, list[Sample]]) -> dict[str, Any]:
    summaries = {name: summarize(taken) for name, taken in samples.items()}
    ours, naive, unpacked = summaries["ours"], summaries["naive"], summaries["ours_without_bytecode"]
    return {
        "benchmark": "cold_start",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "runs": len(samples["ours"]),
        **summaries,
        # Ours over naive up to the moment the response is ready: what a caller waits for in Lambda, where the
        # process is frozen after the invoke rather than torn down. The goal's figure.
        "ratio": round(ours["to_answer_ms_median"] / naive["to_answer_ms_median"], 3),
        # The same, spawn to exit (the interpreter's teardown too, which Lambda never pays).
        "ratio_to_exit": round(ours["median_ms"] / naive["median_ms"], 3),
        # Our handler packaged as the naive one is: the lazy imports' share of the gain, without the bytecode.
        "ratio_without_bytecode": round(unpacked["to_answer_ms_median"] / naive["to_answer_ms_median"], 3),
        "goal_ratio": GOAL_RATIO,
        "notes": NOTES,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="measured rounds of each deployment")
    parser.add_argument("--warmup", type=int, default=1, help="unrecorded runs of each before measuring")
    parser.add_argument("--out", type=Path, default=RESULTS_FILE, help="where the JSON report goes")
    args = parser.parse_args(argv)
    report = run_benchmark(args.runs, args.warmup, args.out)
    print(
        f"\nCold start, medians of {report['runs']} fresh processes each ({report['machine']['cpus']} CPUs, "
        f"Python {report['machine']['python']}):"
    )
    for name in ("ours", "naive", "ours_without_bytecode"):
        side = report[name]
        print(
            f"  {name:<21} {side['median_ms']:7.1f} ms to exit, {side['to_answer_ms_median']:7.1f} ms to answer "
            f"(import {side['import_ms_median']:.1f}, first request {side['first_request_ms_median']:.1f}, "
            f"peak RSS {side['peak_rss_mb_median']:.1f} MB)"
        )
    ratios = f"{report['ratio']:.3f} to answer, {report['ratio_to_exit']:.3f} to exit"
    ratios += f" ({report['ratio_without_bytecode']:.3f} to answer without our bytecode)"
    print(f"  ratio {ratios} (goal {report['goal_ratio']})")
    print(f"Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
