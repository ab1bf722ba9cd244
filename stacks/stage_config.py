"""Typed per-stage settings, read from cdk.json context (`-c stage=prod`).

This module imports nothing from CDK, so the local runtime reads the same settings as a deployment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.models import Limits
from shared.resources import QUEUES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CDK_JSON = PROJECT_ROOT / "cdk.json"


# The functions behind the public doors (the HTTP API, the streaming URL): the only ones whose callers go through a
# `live` alias when they need published versions (SnapStart, provisioned concurrency), so the only ones that may
# have provisioned concurrency. Queues, schedules and chat's call to billing invoke the unqualified function.
DOOR_FUNCTIONS = ("chat", "stream")
QUEUE_CONSUMERS = frozenset(queue.consumer for queue in QUEUES)
# The function SnapStart is for: the one behind the HTTP API, whose cold starts users feel.
SNAP_START_FUNCTION = "chat"


class FunctionSizing(BaseModel):
    """A function's memory and time, and the concurrency it keeps for itself.

    reserved_concurrency (None: none) is both the function's share of the account's concurrency, which no other
    function may take, and its ceiling. An account must keep 100 of its concurrency unreserved, so the reservations
    of all stages in one account must add up to at most the account's limit less 100. The default limit is 1,000,
    but new accounts may start with as little as 10: there no function can reserve any, and a deploy that tries
    fails. So only prod reserves (cdk.json); ask AWS for a higher limit before reserving in a new account.

    provisioned_concurrency keeps that many instances initialised on the function's `live` alias (billed by the hour
    whether used or not); it needs a published version and the alias, so only DOOR_FUNCTIONS may have it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    memory_mb: int = Field(ge=128, le=10240)
    timeout_seconds: int = Field(ge=1, le=900)
    reserved_concurrency: int | None = Field(None, ge=1)
    provisioned_concurrency: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _provisioned_within_reserved(self) -> FunctionSizing:
        reserved = self.reserved_concurrency
        if reserved is not None and self.provisioned_concurrency > reserved:
            raise ValueError(
                f"provisioned_concurrency ({self.provisioned_concurrency}) cannot exceed "
                f"reserved_concurrency ({reserved})"
            )
        return self


# The functions that answer questions hold tenants' vector indexes in memory (shared/data/vectors.py). Their memory
# is sized for a tenant of 1M chunks at 1,536 dimensions (docs/decisions/0011-a-million-chunks.md), and tells
# them how many rows of indexes they may hold (DOCUCHAT_INDEX_CACHE_ROWS, `index_cache_rows`): a larger tenant is
# refused with a 503 rather than let run the function out of memory.
INDEX_FUNCTIONS = ("chat", "stream")
# How long a warm function trusts a key and its tenant once read: a revocation bites within it (shared/access).
CREDENTIAL_CACHE_SECONDS = 30
# How long a warm function uses a tenant's index without re-reading its manifest: a new document answers within it.
INDEX_TRUST_SECONDS = 5
# What a function needs besides its indexes: Python, the app and its clients (~150 MB at rest), a request's work,
# a refresh's new flat part.
INDEX_RESERVE_MB = 512
# One row at 1,536 dimensions: int8 vector 1,536 B, sign bits 192 B, scale, length, chunk and document numbers
# 16 B, and keyword postings at 8 B a distinct term (~100 in a real 220-token chunk). bench/retrieval.py measures
# 1,840 B a row with its 12-word synthetic chunks (index_mb at 1M); 2,560 leaves room for real text.
INDEX_BYTES_PER_ROW = 2_560
# 512 MB + 1M rows x 2,560 B = 2,953 MB: 3,072 MB holds 1,048,576 rows, and gives the function ~1.7 vCPUs.
INDEX_FUNCTION_MEMORY_MB = 3_072


def index_cache_rows(memory_mb: int) -> int:
    """Rows of vector indexes a function of `memory_mb` may hold."""
    return max(1_000, (memory_mb - INDEX_RESERVE_MB) * 2**20 // INDEX_BYTES_PER_ROW)


DEFAULT_SIZING = {
    "chat": FunctionSizing(memory_mb=INDEX_FUNCTION_MEMORY_MB, timeout_seconds=29),
    # A streamed answer may take longer than API Gateway's 29 s; a Function URL streams for up to 15 minutes.
    "stream": FunctionSizing(memory_mb=INDEX_FUNCTION_MEMORY_MB, timeout_seconds=120),
    # A batch of five deliveries, each allowed 10 s.
    "webhooks": FunctionSizing(memory_mb=256, timeout_seconds=90),
    # 2 GB buys the CPU the local embedder and PDF parsing want; large documents continue in a new message. It also
    # compacts tenants' vectors: one pack (~110 MB) and its sources at a time, and a codebook's training sample.
    "ingestion": FunctionSizing(memory_mb=2048, timeout_seconds=300),
    "metering": FunctionSizing(memory_mb=512, timeout_seconds=30),
    "billing": FunctionSizing(memory_mb=512, timeout_seconds=300),
}


class StageConfig(BaseModel):
    """Everything that differs between dev, staging and prod."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{1,20}$")
    account: str | None = None
    region: str
    log_level: str = "INFO"
    log_retention_days: int = 30
    retain_data: bool
    point_in_time_recovery: bool
    llm_model: str
    # Tried in order when llm_model fails (LLM_FALLBACK_MODEL); then the extractive responder answers.
    llm_fallback_models: list[str] = Field(default_factory=list)
    # Further models tenants may name on /v1/chat/completions.
    llm_allowed_models: list[str] = Field(default_factory=list)
    # Seconds an answer is served from the response cache (LLM_CACHE_TTL); 0: off.
    llm_cache_ttl_seconds: int = Field(0, ge=0, le=30 * 86_400)
    prices_tomans_per_1k_tokens: dict[str, int]
    # Every tenant's limits unless it has its own (null: unlimited).
    default_limits: Limits = Field(default_factory=Limits)
    # Origins browsers may call the API from: the web app's, say. Empty: no browser access.
    cors_allowed_origins: list[str] = Field(default_factory=list)
    audit_retention_days: int = Field(400, ge=1, le=3650)
    billing_timezone: str
    billing_hour: int = Field(ge=0, le=23)
    billing_minute: int = Field(ge=0, le=59)
    # The nightly check that invoiced tokens equal metered events; it reads what billing wrote, so it runs later.
    reconcile_hour: int = Field(2, ge=0, le=23)
    reconcile_minute: int = Field(0, ge=0, le=59)
    mail_sender: str
    zibal_base_url: str
    api_throttle_rate: int = Field(gt=0)
    api_throttle_burst: int = Field(gt=0)
    alarm_email: str | None = None
    # "full": every alarm, a composite that pages, two dashboards; "lean": only the alarms that would page, each
    # notifying directly, no dashboards (idle cost: stacks/monitoring.py).
    monitoring: Literal["full", "lean"] = "full"
    snap_start: bool = False
    functions: dict[str, FunctionSizing] = Field(default_factory=lambda: dict(DEFAULT_SIZING))

    @field_validator("prices_tomans_per_1k_tokens")
    @classmethod
    def _has_default_price(cls, prices: dict[str, int]) -> dict[str, int]:
        if "default" not in prices:
            raise ValueError("prices_tomans_per_1k_tokens needs a 'default' entry")
        if any(price < 0 for price in prices.values()):
            raise ValueError("prices cannot be negative")
        return prices

    @field_validator("functions", mode="before")
    @classmethod
    def _fill_sizing(cls, sizing: dict[str, Any]) -> dict[str, Any]:
        """A stage names only what it changes (`"chat": {"reserved_concurrency": 50}`); the rest is the default."""
        unknown = set(sizing) - set(DEFAULT_SIZING)
        if unknown:
            raise ValueError(f"functions: {sorted(unknown)} are no functions of DocuChat ({sorted(DEFAULT_SIZING)})")
        return {
            name: {**default.model_dump(), **_as_dict(sizing.get(name, {}))} for name, default in DEFAULT_SIZING.items()
        }

    @model_validator(mode="after")
    def _concurrency_fits_the_callers(self) -> StageConfig:
        for name, sizing in self.functions.items():
            # An SQS event source can be held to no fewer than 2 batches at once (stacks/messaging.py).
            if name in QUEUE_CONSUMERS and sizing.reserved_concurrency == 1:
                raise ValueError(f"functions.{name}.reserved_concurrency: a queue's consumer needs at least 2")
            if sizing.provisioned_concurrency and name not in DOOR_FUNCTIONS:
                raise ValueError(
                    f"functions.{name}.provisioned_concurrency: only {', '.join(DOOR_FUNCTIONS)} are called through "
                    "the alias that provisioned concurrency is kept on"
                )
        # Lambda refuses both on one function: a SnapStart version is restored from its snapshot, not kept warm.
        if self.snap_start and self.functions[SNAP_START_FUNCTION].provisioned_concurrency:
            raise ValueError(
                f"snap_start and functions.{SNAP_START_FUNCTION}.provisioned_concurrency: Lambda allows one or the "
                "other"
            )
        return self

    @model_validator(mode="after")
    def _reconciles_after_billing(self) -> StageConfig:
        # Both look at the previous day, so the check must come after the run on the same day, not wrap past midnight.
        if (self.reconcile_hour, self.reconcile_minute) <= (self.billing_hour, self.billing_minute):
            raise ValueError("the reconciliation must come later in the day than billing (reconcile_hour, _minute)")
        return self

    @property
    def billing_cron(self) -> str:
        """EventBridge Scheduler cron, evaluated in billing_timezone."""
        return _daily_cron(self.billing_hour, self.billing_minute)

    @property
    def reconcile_cron(self) -> str:
        """EventBridge Scheduler cron, evaluated in billing_timezone."""
        return _daily_cron(self.reconcile_hour, self.reconcile_minute)

    def runtime_environment(self) -> dict[str, str]:
        """Settings every function receives as environment variables (see shared.settings)."""
        return {
            "DOCUCHAT_STAGE": self.name,
            "LLM_MODEL": self.llm_model,
            "LLM_FALLBACK_MODEL": ",".join(self.llm_fallback_models),
            "LLM_ALLOWED_MODELS": ",".join(self.llm_allowed_models),
            "LLM_CACHE_TTL": str(self.llm_cache_ttl_seconds),
            "DOCUCHAT_DEFAULT_LIMITS": self.default_limits.model_dump_json(),
            "DOCUCHAT_AUDIT_RETENTION_DAYS": str(self.audit_retention_days),
            "DOCUCHAT_CREDENTIAL_CACHE_SECONDS": str(CREDENTIAL_CACHE_SECONDS),
            "DOCUCHAT_INDEX_TRUST_SECONDS": str(INDEX_TRUST_SECONDS),
            "DOCUCHAT_PRICES": json.dumps(self.prices_tomans_per_1k_tokens, sort_keys=True),
            "DOCUCHAT_BILLING_TIMEZONE": self.billing_timezone,
            "DOCUCHAT_MAIL_SENDER": self.mail_sender,
            "DOCUCHAT_ZIBAL_BASE_URL": self.zibal_base_url,
            "POWERTOOLS_LOG_LEVEL": self.log_level,
            "POWERTOOLS_METRICS_NAMESPACE": metrics_namespace(self.name),
        }


def _as_dict(sizing: FunctionSizing | dict[str, Any]) -> dict[str, Any]:
    return sizing.model_dump(exclude_unset=True) if isinstance(sizing, FunctionSizing) else dict(sizing)


def _daily_cron(hour: int, minute: int) -> str:
    return f"cron({minute} {hour} * * ? *)"


def metrics_namespace(stage: str) -> str:
    return f"DocuChat/{stage}"


class UnknownStageError(ValueError):
    pass


def load_stage(stage: str, context: dict[str, Any] | None = None) -> StageConfig:
    """The settings of `stage` from the CDK context, or from cdk.json when run outside the CDK CLI."""
    stages = (context or {}).get("stages") or json.loads(CDK_JSON.read_text())["context"]["stages"]
    if stage not in stages:
        raise UnknownStageError(f"unknown stage {stage!r}; cdk.json defines {sorted(stages)}")
    return StageConfig(name=stage, **stages[stage])
