"""The one definition of DocuChat's tables, queues, bucket and their names.

The CDK stacks (stacks/) and the local runtime (local/) both build their resources from these specs, so
key schemas, indexes and queue wiring are written down exactly once. This module imports nothing from
AWS: the Lambda functions read the same names through shared.settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

PROJECT = "docuchat"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: Literal["S", "N"] = "S"


@dataclass(frozen=True)
class IndexSpec:
    name: str
    partition_key: Attribute
    sort_key: Attribute | None = None


@dataclass(frozen=True)
class TableSpec:
    id: str
    env_var: str
    partition_key: Attribute
    sort_key: Attribute | None = None
    indexes: tuple[IndexSpec, ...] = ()
    ttl_attribute: str | None = None

    def physical_name(self, stage: str) -> str:
        return physical_name(stage, self.id)


@dataclass(frozen=True)
class QueueSpec:
    id: str
    env_var: str
    consumer: str  # the function that polls it (a key of FUNCTIONS)
    max_receive_count: int = 5
    batch_size: int = 10

    def physical_name(self, stage: str) -> str:
        return physical_name(stage, self.id)

    def dlq_physical_name(self, stage: str) -> str:
        return physical_name(stage, f"{self.id}-dlq")


@dataclass(frozen=True)
class TopicSpec:
    id: str
    env_var: str

    def physical_name(self, stage: str) -> str:
        return physical_name(stage, self.id)


@dataclass(frozen=True)
class BucketSpec:
    id: str
    env_var: str
    notify_queue: str  # id of the queue that receives object-created events
    notify_prefix: str

    def physical_name(self, stage: str, account: str) -> str:
        # Bucket names are global, so the account keeps two deployments of one stage apart.
        return physical_name(stage, f"{self.id}-{account}")


@dataclass(frozen=True)
class FunctionSpec:
    id: str
    handler: str  # dotted path inside the code bundle
    reads: tuple[str, ...] = ()  # table ids
    writes: tuple[str, ...] = ()  # table ids (implies read)
    sends_to: tuple[str, ...] = ()  # queue ids
    bucket_access: Literal["none", "read", "read_write"] = "none"
    sends_email: bool = False
    invokes: tuple[str, ...] = ()  # function ids it may call synchronously
    publishes: tuple[str, ...] = ()  # topic ids
    # A script (in the code bundle) that runs instead of the managed runtime's loop: AWS_LAMBDA_EXEC_WRAPPER.
    exec_wrapper: str | None = None


def physical_name(stage: str, resource_id: str) -> str:
    return f"{PROJECT}-{stage}-{resource_id}"


PK = Attribute("pk")
SK = Attribute("sk")

# Every tenant item has pk == tenant id (invariant 4); sk says what the item is.
# Every tenant's profile, oldest first (ids are time-ordered): the admin list and the jobs that walk all tenants.
TENANT_DIRECTORY = IndexSpec("tenant-directory", Attribute("directory"), Attribute("tenant_id"))
TENANTS = TableSpec("tenants", "DOCUCHAT_TENANTS_TABLE", PK, SK, indexes=(TENANT_DIRECTORY,))
# Sparse index of the documents still waiting for their file, by when its upload URL expires: the upload sweep
# (shared/ingestion.py) finds the ones whose file never came. An item leaves it when its file arrives.
PENDING_UPLOADS = IndexSpec("pending-uploads", Attribute("upload_pending"), Attribute("upload_expires_at"))
DOCUMENTS = TableSpec("documents", "DOCUCHAT_DOCUMENTS_TABLE", PK, SK, indexes=(PENDING_UPLOADS,))
# A tenant's conversations, most recently updated first (only the headers carry `updated_at`).
RECENT_CONVERSATIONS = IndexSpec("recent", PK, Attribute("updated_at"))
CONVERSATIONS = TableSpec(
    "conversations", "DOCUCHAT_CONVERSATIONS_TABLE", PK, SK, indexes=(RECENT_CONVERSATIONS,), ttl_attribute="expires_at"
)
# Claims, counters and day-closed markers; see shared/data/usage.py for the layout.
USAGE = TableSpec("usage", "DOCUCHAT_USAGE_TABLE", PK, SK, ttl_attribute="expires_at")
BILLING = TableSpec("billing", "DOCUCHAT_BILLING_TABLE", PK, SK)

# Every admin action, by tenant (pk = tenant id, or "-"), and all of them newest first through `recent`.
RECENT_AUDIT = IndexSpec("recent", Attribute("log"), SK)
AUDIT = TableSpec("audit", "DOCUCHAT_AUDIT_TABLE", PK, SK, indexes=(RECENT_AUDIT,), ttl_attribute="expires_at")

TABLES: tuple[TableSpec, ...] = (TENANTS, DOCUMENTS, CONVERSATIONS, USAGE, BILLING, AUDIT)

# Large batches: metering writes one counter update per tenant, day and model of a batch, so the more events a batch
# holds, the fewer writes an event costs (bench/metering.py: 1.37 items an event spread over 20 tenants, 1.75 at 25).
# The batching window (stacks/messaging.py, 2 s) still bounds how late usage lands when traffic is light.
USAGE_QUEUE = QueueSpec("usage", "DOCUCHAT_USAGE_QUEUE_URL", consumer="metering", batch_size=100)
# One message an invocation: ingestion plans its work by the time left, which a second message would share.
INGESTION_QUEUE = QueueSpec("ingestion", "DOCUCHAT_INGESTION_QUEUE_URL", consumer="ingestion", batch_size=1)

# Webhook events on their way to tenants' URLs; the webhooks function sends retries to it too.
WEBHOOKS_QUEUE = QueueSpec("webhooks", "DOCUCHAT_WEBHOOKS_QUEUE_URL", consumer="webhooks", batch_size=5)

QUEUES: tuple[QueueSpec, ...] = (USAGE_QUEUE, INGESTION_QUEUE, WEBHOOKS_QUEUE)

# Escalations to a person: whoever runs the support desk subscribes (email, a ticketing system's endpoint).
ESCALATIONS_TOPIC = TopicSpec("escalations", "DOCUCHAT_ESCALATIONS_TOPIC_ARN")
TOPICS: tuple[TopicSpec, ...] = (ESCALATIONS_TOPIC,)

# How often the frequent scheduled jobs run, deployed (stacks/schedule.py) and locally (local/runtime.py) alike.
OUTBOX_DRAIN_MINUTES = 5  # metering counts the usage events parked while SQS would not take them
UPLOAD_SWEEP_MINUTES = 15  # ingestion fails the documents whose file never arrived

DOCUMENTS_BUCKET = BucketSpec(
    "documents", "DOCUCHAT_DOCUMENTS_BUCKET", notify_queue="ingestion", notify_prefix="tenants/"
)

FUNCTIONS: dict[str, FunctionSpec] = {
    spec.id: spec
    for spec in (
        FunctionSpec(
            "chat",
            handler="functions.chat.handler.handler",
            # usage: the outbox, rate counters and budgets; billing: the payment callback; audit: admin actions.
            writes=("tenants", "documents", "conversations", "usage", "billing", "audit"),
            sends_to=("usage", "webhooks"),
            bucket_access="read_write",
            invokes=("billing",),  # POST /v1/admin/billing/run runs the nightly job on demand
            publishes=("escalations",),
        ),
        # The same app behind a Function URL that streams (docs/decisions/0007): its own runtime loop speaks the
        # Runtime API's streaming mode, so it needs exactly what chat needs.
        FunctionSpec(
            "stream",
            handler="functions.stream.runtime.handler",
            writes=("tenants", "documents", "conversations", "usage", "billing", "audit"),
            sends_to=("usage", "webhooks"),
            bucket_access="read_write",
            invokes=("billing",),
            publishes=("escalations",),
            exec_wrapper="functions/stream/bootstrap",
        ),
        FunctionSpec(
            "ingestion",
            handler="functions.ingestion.handler.handler",
            # tenants: whose budget a document's embedding counts against.
            reads=("tenants",),
            # usage: the outbox for embedding usage events SQS could not take, and the budgets.
            writes=("documents", "usage"),
            # usage: embedding tokens; ingestion: the rest of a large document, handed to the next invocation;
            # webhooks: the budget's 80% notice.
            sends_to=("usage", "ingestion", "webhooks"),
            bucket_access="read_write",  # writes the vector segments
        ),
        # Reads tenants to refuse events of tenants that do not exist.
        FunctionSpec("metering", handler="functions.metering.handler.handler", reads=("tenants",), writes=("usage",)),
        FunctionSpec(
            "billing",
            handler="functions.billing.handler.handler",
            reads=("tenants",),
            writes=("usage", "billing"),  # usage: the day-closed markers written before a day is read
            sends_to=("webhooks",),  # invoice.created
            sends_email=True,
        ),
        # Delivers webhook events (and the emails some carry); logs each attempt; queues its own retries.
        FunctionSpec(
            "webhooks",
            handler="functions.webhooks.handler.handler",
            reads=("tenants",),
            writes=("conversations",),
            sends_to=("webhooks",),
            sends_email=True,
        ),
    )
}


def table_by_id(table_id: str) -> TableSpec:
    return next(t for t in TABLES if t.id == table_id)


def queue_by_id(queue_id: str) -> QueueSpec:
    return next(q for q in QUEUES if q.id == queue_id)


def topic_by_id(topic_id: str) -> TopicSpec:
    return next(t for t in TOPICS if t.id == topic_id)


# What a browser may send, and read, across origins: the local app (functions/chat/app.py), the HTTP API and the
# streaming URL (stacks/api.py) all take these lists.
CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type", "X-API-Key", "Idempotency-Key")
CORS_EXPOSED_HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "Retry-After")
# Browsers PUT presigned uploads straight to the documents bucket. The presigned URL is the authorization; CORS
# only lets the web app's page see the answer, so the rule allows PUT with the headers the URL was signed for.
UPLOAD_CORS_METHODS = ("PUT",)
UPLOAD_CORS_HEADERS = ("*",)
UPLOAD_CORS_MAX_AGE_SECONDS = 600
