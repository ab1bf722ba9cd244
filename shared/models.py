"""Domain records shared by the functions. HTTP request/response shapes live in functions/chat/schemas.py."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

# Ids are short, lowercase and free of "_", so an API key can carry them: dc_<tenant>_<key>_<secret>.
ID_PATTERN = r"^[a-z][0-9a-f]{8,32}$"


def _whole_number(value: object) -> object:
    """An integer as JSON has it: 3 or 3.0, never true or "3" (pydantic's lax mode would take those)."""
    if isinstance(value, bool | str):
        raise ValueError("must be a whole number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


AS_WHOLE_NUMBER = BeforeValidator(_whole_number)
WholeNumber = Annotated[int, AS_WHOLE_NUMBER]
# With bounds, write Annotated[int, Field(ge=..., le=...), AS_WHOLE_NUMBER]: bounds put on WholeNumber itself
# reach the OpenAPI schema as "ge"/"le", keywords JSON Schema does not know (pydantic 2.14).


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class ModelPrice(Record):
    """Tomans per 1,000 tokens."""

    input: WholeNumber = Field(ge=0, le=1_000_000)
    output: WholeNumber = Field(ge=0, le=1_000_000)


class Scope(StrEnum):
    """What a key or a token may do. A key is issued with all of them unless it names fewer."""

    CHAT = "chat"  # chat, completions, conversations
    DOCUMENTS_READ = "documents:read"
    DOCUMENTS_WRITE = "documents:write"
    USAGE_READ = "usage:read"  # usage, budget, invoices
    TICKETS = "tickets"  # escalations to a person
    WEBHOOKS = "webhooks"  # the tenant's webhook and its delivery log


ALL_SCOPES: frozenset[str] = frozenset(scope.value for scope in Scope)
LIMIT_NAMES = ("requests_per_minute", "requests_per_hour", "monthly_token_budget")


class Limits(Record):
    """What a caller may use; None is unlimited."""

    requests_per_minute: int | None = None
    requests_per_hour: int | None = None
    monthly_token_budget: int | None = None

    def overridden(self, overrides: dict[str, int | None] | None) -> Limits:
        """These limits with some replaced (None in `overrides`: unlimited)."""
        return self.model_copy(update=dict(overrides)) if overrides else self

    def tightened(self, own: dict[str, int] | None) -> Limits:
        """These limits, or a key's own where they are tighter: a key can only ever be limited more."""
        if not own:
            return self
        updates = {}
        for name, value in own.items():
            current = getattr(self, name)
            updates[name] = value if current is None else min(current, value)
        return self.model_copy(update=updates)


class JwtSettings(Record):
    """The tenant's identity provider: tokens from `issuer`, signed by a key in `jwks_url`, for `audience`."""

    issuer: str
    jwks_url: str
    audience: str


class Tenant(Record):
    tenant_id: str
    name: str
    email: str
    status: TenantStatus = TenantStatus.ACTIVE
    created_at: datetime
    # Per-model prices that replace the stage's for this tenant ("default" covers the models not listed).
    prices: dict[str, ModelPrice] | None = None
    # The limits this tenant has instead of the stage's defaults (a None value: unlimited).
    limits: dict[str, int | None] | None = None
    jwt: JwtSettings | None = None


class ApiKey(Record):
    """An issued key. Only its hash is stored; `prefix` is the non-secret part shown in listings."""

    tenant_id: str
    key_id: str
    prefix: str
    key_hash: str
    name: str = ""
    created_at: datetime
    # From this moment the key is refused: set at once by a revocation, later by one with a grace period.
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    scopes: tuple[str, ...] | None = None  # None: every scope
    limits: dict[str, int] | None = None  # tighter than the tenant's, never looser

    def usable_at(self, now: datetime) -> bool:
        return (self.revoked_at is None or self.revoked_at > now) and (self.expires_at is None or self.expires_at > now)


class Principal(Record):
    """Who is calling: a tenant, through one of its keys or a token of its identity provider."""

    tenant_id: str
    key_id: str  # the key's id; for a token, "jwt"
    subject: str = ""  # whose requests count against the rate limits: the key id, or "jwt:<sub>"
    scopes: frozenset[str] = ALL_SCOPES
    limits: Limits = Limits()

    @property
    def rate_subject(self) -> str:
        return self.subject or self.key_id


class DocumentStatus(StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"
    DELETING = "deleting"  # being removed; a retried DELETE finishes the job


class IngestionStage(StrEnum):
    PARSING = "parsing"
    EMBEDDING = "embedding"
    INDEXING = "indexing"


class Document(Record):
    tenant_id: str
    document_id: str
    title: str
    content_type: str
    status: DocumentStatus = DocumentStatus.PENDING
    reason: str | None = None
    source_key: str
    size_bytes: int = 0
    chunk_count: int = 0
    # While processing: which upload (generation), which step, and how many chunks are embedded so far.
    generation: str | None = None
    stage: IngestionStage | None = None
    chunks_embedded: int = 0
    # Until its file arrives: when the upload URL stops working (after which the upload sweep may fail it).
    upload_expires_at: datetime | None = None
    created_at: datetime
    updated_at: datetime


SNIPPET_CHARS = 240  # of a cited passage, shown with the citation


class Chunk(Record):
    tenant_id: str
    document_id: str
    index: int
    title: str
    text: str
    section: str = ""  # the heading the chunk falls under
    page: int | None = None  # the PDF page the chunk starts on

    def embedding_text(self) -> str:
        """What is embedded and keyword-indexed: the chunk with its document title and section heading
        (unless the chunk opens with that heading already)."""
        opens_with_heading = self.text.lstrip("# ").startswith(self.section)
        heading = f"{self.title}\n{self.section}" if self.section and not opens_with_heading else self.title
        return f"{heading}\n\n{self.text}"


class Passage(Record):
    """A retrieved chunk with its relevance score."""

    chunk: Chunk
    score: float


class Citation(Record):
    document_id: str
    title: str
    chunk: int
    snippet: str
    score: float
    page: int | None = None  # the PDF page the passage starts on; None for other documents

    @classmethod
    def of(cls, passage: Passage) -> Citation:
        chunk = passage.chunk
        return cls(
            document_id=chunk.document_id,
            title=chunk.title,
            chunk=chunk.index,
            snippet=chunk.text[:SNIPPET_CHARS],
            score=passage.score,
            page=chunk.page,
        )


class Message(Record):
    role: str  # "user" | "assistant"
    content: str
    created_at: datetime


class Conversation(Record):
    tenant_id: str
    conversation_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: tuple[Message, ...] = ()


class UsageKind(StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


# Cached answers are counted and billed under their model's name with this suffix: their own counter, their own
# invoice line, priced from the price table's "cached" entry (0 unless set).
CACHED_SUFFIX = " (cached)"


class UsageEvent(Record):
    """One metered use of a model. `event_id` is derived from the request id, so retries repeat it."""

    event_id: str = Field(min_length=8, max_length=128)
    tenant_id: str = Field(pattern=ID_PATTERN)
    key_id: str = Field(default="", max_length=64)
    kind: UsageKind
    model: str = Field(min_length=1, max_length=100)
    # Bounded so that one bad event cannot poison a counter; far above any real request.
    input_tokens: int = Field(ge=0, le=10_000_000)
    output_tokens: int = Field(ge=0, le=10_000_000)
    cached: bool = False
    occurred_at: datetime
    # The producing request's correlation id (the API request id), so the metering log lines of this event can be
    # found from the chat's. Not part of what is counted or billed.
    correlation_id: str = Field(default="", max_length=128)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def billed_model(self) -> str:
        """The model its tokens are counted and billed under: cached answers apart from the model's own."""
        return self.model + CACHED_SUFFIX if self.cached else self.model


class TokenCounts(Record):
    """Summed usage: tokens in and out, and how many events they came from."""

    tenant_id: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    events: int = 0

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class UsageCounter(TokenCounts):
    """Tokens of one tenant, on one billing day, for one model."""

    day: date


class LateUsage(TokenCounts):
    """Usage metered after its day was billed: it goes on the invoice of `invoice_day` as its own line."""

    invoice_day: date
    event_day: date


class InvoiceStatus(StrEnum):
    OPEN = "open"  # payment link sent, waiting for payment
    PAYMENT_FAILED = "payment_failed"  # the gateway refused the payment request; see payment_error
    PAID = "paid"
    NOTHING_DUE = "nothing_due"  # usage was too small to charge


class LineKind(StrEnum):
    USAGE = "usage"  # the invoice day's own usage
    LATE = "late"  # usage of an earlier, already billed day, metered after that day was closed
    CACHED = "cached"  # the day's answers served from the response cache, priced as "cached" (0 by default)


class InvoiceLine(Record):
    kind: LineKind = LineKind.USAGE
    usage_day: date
    model: str
    input_tokens: int
    output_tokens: int
    tokens: int
    events: int
    input_price: int  # Tomans per 1,000 input tokens
    output_price: int
    amount_tomans: int


class Invoice(Record):
    invoice_id: str
    tenant_id: str
    period: date
    lines: tuple[InvoiceLine, ...]
    total_tokens: int
    amount_tomans: int
    status: InvoiceStatus = InvoiceStatus.OPEN
    payment_track_id: str | None = None
    payment_url: str | None = None
    payment_error: str | None = None
    payment_lease_until: datetime | None = None
    email_message_id: str | None = None
    email_lease_until: datetime | None = None
    webhook_event_id: str | None = None  # invoice.created, queued for the tenant's webhook
    webhook_lease_until: datetime | None = None
    created_at: datetime
    paid_at: datetime | None = None
    payment_reference: str | None = None

    @property
    def amount_rials(self) -> int:
        return self.amount_tomans * 10


class BillingRunStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class BillingRun(Record):
    period: date
    status: BillingRunStatus
    trigger: str
    tenants: int
    invoices_created: int
    invoices_existing: int
    errors: tuple[str, ...] = ()
    started_at: datetime
    finished_at: datetime


WEBHOOK_EVENTS = ("escalation.created", "budget.threshold", "invoice.created")


class WebhookConfig(Record):
    tenant_id: str
    url: str
    events: tuple[str, ...]
    secret: str
    created_at: datetime


class DeliveryAttempt(Record):
    at: datetime
    status_code: int | None = None  # None: no answer (refused, timed out, unreachable)
    error: str | None = None
    duration_ms: int = 0


class WebhookDelivery(Record):
    tenant_id: str
    event_id: str
    type: str
    url: str
    status: str  # pending | delivered | retrying | failed | refused
    attempts: tuple[DeliveryAttempt, ...] = ()
    next_attempt_at: datetime | None = None
    created_at: datetime


class TicketStatus(StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Ticket(Record):
    """An escalation to a person: what was asked, why it was escalated, and where it stands."""

    tenant_id: str
    ticket_id: str
    conversation_id: str
    question: str
    reason: str
    status: TicketStatus = TicketStatus.OPEN
    created_at: datetime
    updated_at: datetime


class AuditRecord(Record):
    """One admin action: who, what, on what, with which details, when."""

    record_id: str
    at: datetime
    actor: str
    action: str
    target: str
    tenant_id: str | None = None
    details: dict[str, object] = Field(default_factory=dict)
