"""HTTP request and response bodies of the chat function's API (v1)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, StringConstraints, Tag

from shared.models import (
    AS_WHOLE_NUMBER,
    AuditRecord,
    BillingRun,
    Citation,
    Document,
    DocumentStatus,
    Invoice,
    ModelPrice,
    Scope,
    Tenant,
    TenantStatus,
    Ticket,
    TicketStatus,
    WebhookDelivery,
    WholeNumber,
)
from shared.reconciliation import TenantReconciliation

ID = r"^[a-z][0-9a-f]{8,32}$"
# http(s) with a host and no spaces; whether it reaches a public address is the service's check (shared/data/outbound).
HTTP_URL = r"^https?://[^\s/?#]+([/?#]\S*)?$"
# Something other than spaces: a blank title or message is refused by the schema, as the service would.
NOT_BLANK = r"\S"
# Addresses as mail systems take them, in ASCII (the same in every regex dialect, the schema's included).
EMAIL = r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$"
DEFAULT_MAX_MESSAGE_CHARS = 8_000  # DOCUCHAT_MAX_MESSAGE_CHARS' default
DEFAULT_MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # DOCUCHAT_MAX_UPLOAD_BYTES' default


def _iso_date(value: object) -> object:
    """Only YYYY-MM-DD: pydantic would also take a number as a timestamp, which no caller means."""
    if isinstance(value, str) and not (len(value) == 10 and value[4] == "-" and value[7] == "-"):
        raise ValueError("a date is YYYY-MM-DD")
    if isinstance(value, int | float):
        raise ValueError("a date is YYYY-MM-DD")
    return value


IsoDate = Annotated[date, BeforeValidator(_iso_date), Field(json_schema_extra={"format": "date"})]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=100)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChatRequest(Body):
    # The limit is a setting (DOCUCHAT_MAX_MESSAGE_CHARS); the schema states its default.
    message: str = Field(min_length=1, max_length=DEFAULT_MAX_MESSAGE_CHARS, pattern=NOT_BLANK)
    conversation_id: str | None = Field(None, pattern=ID)
    use_documents: bool = True
    stream: bool = Field(
        False,
        description="Answer as text/event-stream: a `citations` event, `delta` events ({text}) as the model writes, "
        "then `done` ({conversation_id, usage, model, route, cached}), or `error` ({code, message}).",
    )


class TokenUsage(BaseModel):
    """The answer's tokens, and the tokens spent embedding the question (metered as `embedding` usage)."""

    input_tokens: int
    output_tokens: int
    total_tokens: int
    embedding_tokens: int = 0


class ChatResponse(BaseModel):
    conversation_id: str
    answer: str
    citations: list[Citation]
    usage: TokenUsage
    model: str = Field(description="The model that actually answered (after any fallback).")
    route: str = Field(
        description="rag: answered from documents; not_found: no document was relevant, so the answer says it "
        "does not know; direct: documents not used; degraded: every model failed and the extractive responder "
        "answered from the documents"
    )
    cached: bool = Field(False, description="Served from the response cache (metered as cached usage).")


class MessageOut(BaseModel):
    role: str
    content: str
    created_at: datetime


class ConversationOut(BaseModel):
    conversation_id: str
    title: str
    created_at: datetime
    updated_at: datetime
    messages: list[MessageOut] | None = None


class ConversationList(BaseModel):
    conversations: list[ConversationOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class InlineDocument(Body):
    """Text stored at once."""

    title: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    text: str = Field(min_length=1, pattern=NOT_BLANK)
    content_type: Literal["text/plain", "text/markdown", "text/html"] = "text/plain"


FileType = Literal["text/plain", "text/markdown", "text/html", "application/pdf"]
FILE_TYPES: tuple[str, ...] = get_args(FileType)


class FileDocument(Body):
    """A file to upload: the reply holds where to PUT it."""

    title: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    # The limit is a setting (DOCUCHAT_MAX_UPLOAD_BYTES); the schema states its default.
    size_bytes: WholeNumber = Field(ge=1, le=DEFAULT_MAX_UPLOAD_BYTES)
    content_type: FileType = "text/plain"


def _document_kind(body: object) -> str:
    return "file" if isinstance(body, dict) and "size_bytes" in body else "inline"


# Either inline `text` or the `size_bytes` of a file, never both: each shape forbids the other's fields, and a
# body is checked against the one it means (by `size_bytes`), so its errors are about that shape.
DocumentCreate = Annotated[
    Annotated[InlineDocument, Tag("inline")] | Annotated[FileDocument, Tag("file")], Discriminator(_document_kind)
]


class UploadTarget(BaseModel):
    url: str
    method: str = "PUT"
    headers: dict[str, str] = Field(description="Send exactly these headers with the file.")
    expires_at: datetime


class Progress(BaseModel):
    """How far processing has got: parsing, then embedding chunk after chunk, then indexing."""

    stage: str
    chunks_embedded: int
    chunk_count: int
    percent: int


class DocumentOut(BaseModel):
    document_id: str
    title: str
    content_type: str
    status: str
    reason: str | None
    size_bytes: int
    chunk_count: int
    progress: Progress | None = Field(None, description="Set while the document is processing.")
    upload_expires_at: datetime | None = Field(
        None,
        description="While pending: when the upload URL stops working. A file not sent by then fails the "
        "document with the reason 'the upload never arrived'.",
    )
    created_at: datetime
    updated_at: datetime
    upload: UploadTarget | None = None

    @classmethod
    def of(cls, document: Document, upload: UploadTarget | None = None) -> DocumentOut:
        progress = None
        if document.status == DocumentStatus.PROCESSING and document.stage is not None:
            # Parsing counts as the first 10%, embedding the next 85%, indexing the rest.
            share = document.chunks_embedded / document.chunk_count if document.chunk_count else 0.0
            percent = {"parsing": 0, "embedding": 10 + int(85 * share), "indexing": 95}[document.stage.value]
            progress = Progress(
                stage=document.stage.value,
                chunks_embedded=document.chunks_embedded,
                chunk_count=document.chunk_count,
                percent=percent,
            )
        fields = document.model_dump(exclude={"generation", "stage", "chunks_embedded", "tenant_id", "source_key"})
        return cls.model_validate({**fields, "progress": progress, "upload": upload})


class DocumentList(BaseModel):
    documents: list[DocumentOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class UsageDay(BaseModel):
    day: date
    model: str
    input_tokens: int
    output_tokens: int
    total_tokens: int
    events: int


class BudgetOut(BaseModel):
    """The month's token budget: `limit` null is unlimited. `reserved` is held by calls in flight."""

    limit: int | None
    used: int
    reserved: int
    remaining: int | None
    period: str = Field(description="YYYY-MM, in the billing time zone")


class UsageOut(BaseModel):
    start: date
    end: date
    days: list[UsageDay]
    total_tokens: int
    budget: BudgetOut


class InvoiceOut(BaseModel):
    invoice: Invoice
    amount_rials: int

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceOut:
        return cls(invoice=invoice, amount_rials=invoice.amount_rials)


class InvoiceList(BaseModel):
    invoices: list[InvoiceOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


MAX_PER_MINUTE = 1_000_000
MAX_PER_HOUR = 60_000_000
MAX_MONTHLY_TOKENS = 10**13
# Bounds inside the Annotated, beside the validator (see shared.models.AS_WHOLE_NUMBER), so the schema has them.
PerMinute = Annotated[int, Field(ge=1, le=MAX_PER_MINUTE), AS_WHOLE_NUMBER]
PerHour = Annotated[int, Field(ge=1, le=MAX_PER_HOUR), AS_WHOLE_NUMBER]
MonthlyTokens = Annotated[int, Field(ge=1, le=MAX_MONTHLY_TOKENS), AS_WHOLE_NUMBER]


class LimitsIn(Body):
    requests_per_minute: PerMinute | None = None
    requests_per_hour: PerHour | None = None
    monthly_token_budget: MonthlyTokens | None = None


class KeyLimitsIn(Body):
    """A key's own limits: tighter than its tenant's (a looser one has no effect)."""

    requests_per_minute: PerMinute | None = None
    requests_per_hour: PerHour | None = None


class JwtIn(Body):
    issuer: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)
    jwks_url: str = Field(min_length=8, max_length=2048, pattern=HTTP_URL)
    audience: str = Field(min_length=1, max_length=500, pattern=NOT_BLANK)


class TenantCreate(Body):
    name: str = Field(min_length=1, max_length=200, pattern=NOT_BLANK)
    email: str = Field(pattern=EMAIL, max_length=254)


class TenantUpdate(Body):
    name: str | None = Field(None, min_length=1, max_length=200, pattern=NOT_BLANK)
    email: str | None = Field(None, pattern=EMAIL, max_length=254)
    status: TenantStatus | None = None
    # Tomans per 1,000 tokens by model, replacing the stage's prices for this tenant ("default": the rest).
    prices: dict[ModelName, ModelPrice] | None = Field(None, max_length=50)
    limits: LimitsIn | None = Field(
        None, description="Replaces the stage's defaults for the fields given; a field set to null is unlimited."
    )
    jwt: JwtIn | None = Field(None, description="Trust this identity provider's tokens for this tenant.")


class TenantOut(BaseModel):
    tenant: Tenant


class TenantList(BaseModel):
    tenants: list[Tenant]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class KeyCreate(Body):
    name: str = Field("", max_length=100)
    scopes: list[Scope] | None = Field(None, description="What the key may do; all scopes when not given.")
    expires_at: datetime | None = Field(None, description="When the key stops working (for rotation).")
    limits: KeyLimitsIn | None = None


class KeyCreated(BaseModel):
    key_id: str
    prefix: str
    api_key: str = Field(description="The key itself. It is shown only this once; DocuChat keeps only its hash.")
    created_at: datetime
    scopes: list[str]
    expires_at: datetime | None


class KeyOut(BaseModel):
    key_id: str
    prefix: str
    name: str
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None
    last_used_at: datetime | None
    scopes: list[str]
    limits: dict[str, int] | None


class BillingRunRequest(Body):
    date: IsoDate


class BillingRunsOut(BaseModel):
    runs: list[BillingRun]


class PaymentConfirmation(BaseModel):
    invoice_id: str
    status: str
    paid_at: datetime | None


class ReconciliationOut(BaseModel):
    period: date
    ok: bool
    mismatches: int
    tenants: list[TenantReconciliation]


class AuditOut(BaseModel):
    records: list[AuditRecord]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class WebhookIn(Body):
    url: str = Field(min_length=8, max_length=2048, pattern=HTTP_URL)
    events: list[Literal["escalation.created", "budget.threshold", "invoice.created"]] = Field(min_length=1)


class WebhookOut(BaseModel):
    url: str
    events: list[str]
    created_at: datetime
    secret: str | None = Field(None, description="The signing secret: shown once, when the webhook is set.")


class DeliveryList(BaseModel):
    deliveries: list[WebhookDelivery]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TicketList(BaseModel):
    tickets: list[Ticket]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class TicketUpdate(Body):
    status: TicketStatus


class UploadRules(BaseModel):
    max_bytes: int = Field(description="The largest file a document may be (DOCUCHAT_MAX_UPLOAD_BYTES).")
    content_types: list[str]


class CallerOut(BaseModel):
    """Who the key or token is, and what it may do: what a client checks at sign-in."""

    tenant_id: str
    key_id: str = Field(description="The key's id; \"jwt\" for a token of the tenant's identity provider.")
    subject: str = Field(description="Whose requests count against the rate limits.")
    scopes: list[str]
    uploads: UploadRules
    answers: Literal["model", "extractive"] = Field(
        description="`extractive`: no model is configured, so the built-in extractive responder answers."
    )
