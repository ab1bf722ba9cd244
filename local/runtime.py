"""The whole of DocuChat on one machine: DynamoDB Local, embedded AWS, the chat API, queue workers, schedules.

Everything calls the real handlers. Only what Lambda and AWS provide is played locally: DynamoDB Local (AWS's
own implementation, on Java) holds the tables, moto's server stands in for S3, SQS, SES and Secrets Manager,
threads poll the queues like event source mappings, and timers play the scheduler (docs/decisions/0006).
"""

from __future__ import annotations

import os
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared import resources
from stacks.stage_config import StageConfig, load_stage

LOCAL_STAGE = "local"
SAVE_EVERY_SECONDS = 30
# Ctrl-C stops everything within 10 s: in-flight requests get this long, then the workers what is left.
REQUEST_GRACE_SECONDS = 4
WORKER_GRACE_SECONDS = 4
# DynamoDB Local's JVM: full JIT for throughput under load, a bounded heap, and the serial collector, which
# keeps the footprint small on a laptop (the tables of an in-memory run live in SQLite, outside the heap).
DYNAMODB_JVM_ARGS = ("-Xms64m", "-Xmx512m", "-XX:+UseSerialGC")
# Stage settings the developer's environment may override for `make dev`.
ENVIRONMENT_WINS = frozenset(
    {
        "LLM_MODEL",
        "LLM_FALLBACK_MODEL",
        "LLM_ALLOWED_MODELS",
        "LLM_CACHE_TTL",
        "DOCUCHAT_PRICES",
        "POWERTOOLS_LOG_LEVEL",
    }
)
# Pollers per consumer, as an event source mapping runs several: metering must keep up with many chatting
# clients (moto's queue operations slow down as a backlog grows); ingestion's work is one model, shared.
POLLERS = {"metering": 2, "ingestion": 1, "webhooks": 1}


@dataclass
class LocalOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: str = field(default_factory=lambda: "dca_" + secrets.token_urlsafe(24))
    data_dir: Path | None = None
    zibal_base_url: str | None = None  # None: start the local fake Zibal gateway
    base_stage: str = "dev"  # whose settings (prices, schedule, model) the local system uses

    @classmethod
    def from_environment(cls) -> LocalOptions:
        options = cls(port=int(os.environ.get("PORT", "8000")))
        if os.environ.get("DOCUCHAT_ADMIN_KEY"):
            options.admin_key = os.environ["DOCUCHAT_ADMIN_KEY"]
        if os.environ.get("DOCUCHAT_DATA_DIR"):
            options.data_dir = Path(os.environ["DOCUCHAT_DATA_DIR"]).expanduser().resolve()
        options.zibal_base_url = os.environ.get("DOCUCHAT_ZIBAL_BASE_URL") or None
        return options


class LocalSystem:
    def __init__(self, options: LocalOptions) -> None:
        self.options = options
        self.config: StageConfig = load_stage(options.base_stage).model_copy(update={"name": LOCAL_STAGE})
        self.env: dict[str, str] = {}
        self._threads: list[Any] = []
        self._stoppers: list[Any] = []
        self._state: Any = None
        self._stop_saving = threading.Event()

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.options.port}"

    def start(self) -> None:
        """Start DynamoDB Local, embedded AWS and the workers; afterwards `app` serves the chat API.

        Raises DynamoDBLocalError, with what to do, when Java or DynamoDB Local is missing.
        """
        from local.dynamodb_local import DynamoDBLocal
        from local.state import LocalState

        data_dir = self.options.data_dir
        self.dynamodb = DynamoDBLocal(
            data_dir=LocalState.dynamodb_dir_of(data_dir) if data_dir else None, jvm_args=DYNAMODB_JVM_ARGS
        ).start()
        self._stoppers.append(self.dynamodb.stop)

        from moto.server import ThreadedMotoServer

        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        moto.start()
        self._stoppers.append(moto.stop)
        host, port = moto.get_host_and_port()
        self._set_environment(f"http://{host}:{port}", self.dynamodb.endpoint_url)

        from local.bootstrap import create_all
        from shared.data.aws import AwsClients
        from shared.settings import Settings

        clients = AwsClients(Settings())
        restore = None
        if data_dir:
            self._state = LocalState(data_dir, clients)
            restore = self._state.restore
        origins = [self.url, *Settings().cors_origin_list]  # the web app, on this origin, and any others allowed
        self.env = create_all(
            clients, self.config, self.config.mail_sender, before_notifications=restore, browser_origins=origins
        )
        os.environ.update(self.env)
        self._start_workers()

    def _set_environment(self, aws_endpoint: str, dynamodb_endpoint: str) -> None:
        zibal_url = self.options.zibal_base_url
        if zibal_url is None:
            from local.fake_zibal import FakeZibal

            zibal = FakeZibal()
            zibal.start()
            self._stoppers.append(zibal.stop)
            zibal_url = zibal.base_url
        # The stage's settings, unless the developer's environment sets them (LLM_MODEL=... make dev).
        for name, value in self.config.runtime_environment().items():
            if name in ENVIRONMENT_WINS and name in os.environ:
                continue
            os.environ[name] = value
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "local",
                "AWS_SECRET_ACCESS_KEY": "local",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_REGION": "us-east-1",
                "DOCUCHAT_AWS_ENDPOINT_URL": aws_endpoint,
                "DOCUCHAT_DYNAMODB_ENDPOINT_URL": dynamodb_endpoint,
                "DOCUCHAT_ADMIN_KEY": self.options.admin_key,
                "DOCUCHAT_PUBLIC_BASE_URL": self.url,
                "DOCUCHAT_ZIBAL_BASE_URL": zibal_url,
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_METRICS_DISABLED": "true",
                "POWERTOOLS_SERVICE_NAME": "docuchat-local",
            }
        )

    def _start_workers(self) -> None:
        from functions.billing import handler as billing
        from functions.ingestion import handler as ingestion
        from functions.metering import handler as metering
        from functions.webhooks import handler as webhooks
        from local.workers import QueuePoller, RecurringSchedule, every, nightly
        from shared.container import Container, load_settings

        self.container = Container(load_settings())
        for module in (billing, ingestion, metering, webhooks):
            module.configure(self.container)
        handlers = {"ingestion": ingestion.handler, "metering": metering.handler, "webhooks": webhooks.handler}
        for spec in resources.QUEUES:
            for number in range(POLLERS[spec.consumer]):
                poller = QueuePoller(
                    self.container.aws.sqs,
                    self.env[spec.env_var],
                    handlers[spec.consumer],
                    spec.consumer,
                    spec.batch_size,
                    timeout_seconds=self.config.functions[spec.consumer].timeout_seconds,
                    number=number,
                )
                self._threads.append(poller)
        config, clock = self.config, self.container.clock
        self.schedules = {
            "billing": RecurringSchedule(
                "billing",
                billing.handler,
                {"source": "docuchat.schedule"},
                nightly(config.billing_hour, config.billing_minute, config.billing_timezone),
                clock,
                "billing",
            ),
            "reconcile": RecurringSchedule(
                "reconcile",
                billing.handler,
                {"source": billing.RECONCILE},
                nightly(config.reconcile_hour, config.reconcile_minute, config.billing_timezone),
                clock,
                "billing",
            ),
            "outbox": RecurringSchedule(
                "outbox",
                metering.handler,
                {"source": metering.OUTBOX_DRAIN},
                every(timedelta(minutes=resources.OUTBOX_DRAIN_MINUTES)),  # as deployed
                clock,
                "metering",
            ),
            "upload-sweep": RecurringSchedule(
                "upload-sweep",
                ingestion.handler,
                {"source": ingestion.UPLOAD_SWEEP},
                every(timedelta(minutes=resources.UPLOAD_SWEEP_MINUTES)),  # as deployed
                clock,
                "ingestion",
            ),
        }
        self._threads += self.schedules.values()
        if self._state:
            self._threads.append(threading.Thread(target=self._save_periodically, name="state-saver", daemon=True))
        for thread in self._threads:
            thread.start()

    def _save_periodically(self) -> None:
        while not self._stop_saving.wait(SAVE_EVERY_SECONDS):
            self._state.save(self.env)

    def app(self) -> Any:
        """The chat API, with the web app at `/` on the same origin; uploads go to moto's S3 (local/web.py)."""
        from functions.chat.app import create_app
        from local.web import WithWebApp

        config = {"stage": LOCAL_STAGE, "api_url": "", "streaming_url": ""}  # "": the page's own origin
        return WithWebApp(create_app(self.container), config, connect_to=[os.environ["DOCUCHAT_AWS_ENDPOINT_URL"]])

    def stop(self) -> None:
        """Stop the workers (an ingestion in progress hands the rest of its document to its queue), save what
        moto holds when there is a data folder, then stop moto and DynamoDB Local, last because all need it."""
        self._stop_saving.set()
        for thread in self._threads:
            if hasattr(thread, "stop"):
                thread.stop()
        deadline = time.monotonic() + WORKER_GRACE_SECONDS
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        unfinished = [thread.name for thread in self._threads if thread.is_alive()]
        if unfinished:  # their messages stay on the queue, and come again at the next start
            print(f"  left unfinished (their work stays queued): {', '.join(unfinished)}", flush=True)
        if self._state:
            try:
                self._state.save(self.env, include_queues=True)
            except Exception as error:  # never leave DynamoDB Local running because a save failed
                print(f"  could not save the local state: {error}", file=sys.stderr, flush=True)
        for stop in reversed(self._stoppers):
            stop()


def banner(system: LocalSystem) -> str:
    llm = "built-in extractive responder (no OPENAI_API_KEY)"
    if os.environ.get("OPENAI_API_KEY"):
        chain = " -> ".join(system.container.settings.llm_chain)
        where = os.environ.get("OPENAI_BASE_URL") or "OpenAI"
        llm = f"{chain} at {where}; the extractive responder if all fail"
    state = (
        f"saved in {system.options.data_dir}"
        if system.options.data_dir
        else "in memory (set DOCUCHAT_DATA_DIR to keep it)"
    )
    dynamodb = f"DynamoDB Local at {system.dynamodb.endpoint_url}"
    return "\n".join(
        [
            "",
            "DocuChat is running locally.",
            f"  Web app:    {system.url}/",
            f"  API:        {system.url}",
            f"  API docs:   {system.url}/docs",
            f"  Admin key:  {system.options.admin_key}",
            f"  Answers:    {llm}",
            f"  Payments:   Zibal at {os.environ['DOCUCHAT_ZIBAL_BASE_URL']}",
            f"  Billing:    nightly at {system.config.billing_hour:02d}:{system.config.billing_minute:02d} "
            f"{system.config.billing_timezone} (next {system.schedules['billing'].next_fire:%Y-%m-%d %H:%M}); "
            f"reconciled at {system.config.reconcile_hour:02d}:{system.config.reconcile_minute:02d}",
            f"  Tables:     {dynamodb}",
            f"  AWS (moto): {os.environ['DOCUCHAT_AWS_ENDPOINT_URL']} (S3, SQS, SES, Secrets Manager)",
            f"  State:      {state}",
            "Press Ctrl-C to stop.",
            "",
        ]
    )


def main() -> None:
    import logging

    import uvicorn

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every AWS call otherwise

    from local.dynamodb_local import DynamoDBLocalError

    options = LocalOptions.from_environment()
    system = LocalSystem(options)
    print(f"Starting DocuChat locally on {system.url} ...", flush=True)
    try:
        system.start()
    except DynamoDBLocalError as error:
        system.stop()
        print(f"error: {error}", file=sys.stderr, flush=True)
        sys.exit(2)
    config = uvicorn.Config(
        system.app(),
        host=options.host,
        port=options.port,
        log_level="warning",
        timeout_graceful_shutdown=REQUEST_GRACE_SECONDS,
    )
    server = uvicorn.Server(config)
    print(banner(system), flush=True)
    try:
        server.run()  # shuts down gracefully on Ctrl-C / SIGTERM
    except KeyboardInterrupt:
        pass  # uvicorn re-raises the Ctrl-C it handled; stopping below is the answer to it
    finally:
        print("Stopping DocuChat ...", flush=True)
        system.stop()
        print("Stopped.", flush=True)
