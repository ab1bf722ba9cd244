"""Runtime settings: read from the environment once, at cold start, validated, then passed in.

Domain code never reads os.environ; it receives a Settings object. Names of tables, queues and the
bucket default to the stage's names from shared.resources, the same ones CDK gives them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared import resources
from shared.models import Limits, ModelPrice

# What a deploy puts into a secret an operator must still fill in (CloudFormation refuses empty secrets).
UNSET_SECRET = "set-after-deploy"


def _default_prices() -> dict[str, int | ModelPrice]:
    return {"default": 20}  # today's cluster price: 20 Tomans per 1,000 tokens


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    stage: str = Field("local", validation_alias=_env("DOCUCHAT_STAGE"))
    region: str = Field("us-east-1", validation_alias=_env("AWS_REGION", "AWS_DEFAULT_REGION"))
    # Set only locally and in tests: where emulated AWS (moto) and DynamoDB Local listen.
    aws_endpoint_url: str | None = Field(None, validation_alias=_env("DOCUCHAT_AWS_ENDPOINT_URL"))
    dynamodb_endpoint_url: str | None = Field(None, validation_alias=_env("DOCUCHAT_DYNAMODB_ENDPOINT_URL"))

    tenants_table: str = Field("", validation_alias=_env(resources.TENANTS.env_var))
    documents_table: str = Field("", validation_alias=_env(resources.DOCUMENTS.env_var))
    conversations_table: str = Field("", validation_alias=_env(resources.CONVERSATIONS.env_var))
    usage_table: str = Field("", validation_alias=_env(resources.USAGE.env_var))
    billing_table: str = Field("", validation_alias=_env(resources.BILLING.env_var))
    audit_table: str = Field("", validation_alias=_env(resources.AUDIT.env_var))
    webhooks_queue_url: str = Field("", validation_alias=_env(resources.WEBHOOKS_QUEUE.env_var))
    escalations_topic_arn: str = Field("", validation_alias=_env(resources.ESCALATIONS_TOPIC.env_var))
    usage_queue_url: str = Field("", validation_alias=_env(resources.USAGE_QUEUE.env_var))
    # Ingestion sends itself the rest of a large document through its own queue.
    ingestion_queue_url: str = Field("", validation_alias=_env(resources.INGESTION_QUEUE.env_var))
    documents_bucket: str = Field("", validation_alias=_env(resources.DOCUMENTS_BUCKET.env_var))
    # How the admin API runs billing: the billing function's name in AWS; empty locally (in-process).
    billing_function_name: str = Field("", validation_alias=_env("DOCUCHAT_BILLING_FUNCTION_NAME"))

    # LLM: without a key the built-in extractive responder answers.
    openai_api_key: SecretStr | None = Field(None, validation_alias=_env("OPENAI_API_KEY"))
    openai_secret_arn: str | None = Field(None, validation_alias=_env("DOCUCHAT_OPENAI_SECRET_ARN"))
    openai_base_url: str | None = Field(None, validation_alias=_env("OPENAI_BASE_URL"))
    llm_model: str = Field("gpt-4o-mini", min_length=1, validation_alias=_env("LLM_MODEL"))
    # Models tried after LLM_MODEL, in order, when it fails (seed 002's name; comma-separated).
    llm_fallback_model: str = Field("", validation_alias=_env("LLM_FALLBACK_MODEL"))
    # Further models a tenant may name on /v1/chat/completions (comma-separated), beside the chain.
    llm_allowed_models: str = Field("", validation_alias=_env("LLM_ALLOWED_MODELS"))
    llm_timeout_seconds: float = Field(20.0, gt=0, validation_alias=_env("LLM_TIMEOUT_SECONDS"))
    # Attempts after the first, per model, on 429, 5xx and timeouts (backoff with jitter, Retry-After honoured).
    llm_max_retries: int = Field(2, ge=0, le=10, validation_alias=_env("LLM_MAX_RETRIES"))
    llm_retry_max_wait_seconds: float = Field(8.0, ge=0, le=60, validation_alias=_env("LLM_RETRY_MAX_WAIT_SECONDS"))
    # A model failing this many calls in a row is skipped for the cool-down, then tried again.
    llm_breaker_failures: int = Field(3, ge=1, le=100, validation_alias=_env("LLM_BREAKER_FAILURES"))
    llm_breaker_cooldown_seconds: float = Field(30.0, gt=0, le=3600, validation_alias=_env("LLM_BREAKER_COOLDOWN"))
    llm_max_output_tokens: int = Field(512, gt=0, validation_alias=_env("LLM_MAX_TOKENS"))
    # The most output tokens a caller of /v1/chat/completions may ask for; more is refused as absurd.
    llm_max_tokens_limit: int = Field(16_384, gt=0, le=1_000_000, validation_alias=_env("LLM_MAX_TOKENS_LIMIT"))
    llm_temperature: float = Field(0.2, ge=0, le=2, validation_alias=_env("LLM_TEMPERATURE"))
    # Seconds a chat answer is served again from the response cache; 0 turns the cache off (seeds 002, 003).
    llm_cache_ttl_seconds: int = Field(0, ge=0, le=30 * 86_400, validation_alias=_env("LLM_CACHE_TTL"))
    # A streamed reply sends an SSE comment this often while nothing else is ready (before the first token).
    stream_keepalive_seconds: float = Field(5.0, gt=0, le=60, validation_alias=_env("DOCUCHAT_STREAM_KEEPALIVE"))

    # Embeddings: OpenAI's with a key, else the local model (all-MiniLM-L6-v2, in-process). "local" forces it.
    embedder: Literal["auto", "openai", "local"] = Field("auto", validation_alias=_env("DOCUCHAT_EMBEDDER"))
    embedding_model: str = Field("text-embedding-3-small", validation_alias=_env("EMBEDDING_MODEL"))
    embedding_dimensions: int = Field(1536, ge=16, le=4096, validation_alias=_env("EMBEDDING_DIMENSIONS"))
    # Chunks a call (OpenAI takes up to 2,048 inputs and 300,000 tokens a request).
    embedding_batch_size: int = Field(1024, ge=1, le=2048, validation_alias=_env("EMBEDDING_BATCH_SIZE"))
    embedding_batch_tokens: int = Field(250_000, ge=1_000, le=300_000, validation_alias=_env("EMBEDDING_BATCH_TOKENS"))
    embedding_timeout_seconds: float = Field(60.0, gt=0, validation_alias=_env("EMBEDDING_TIMEOUT_SECONDS"))
    embedding_max_retries: int = Field(5, ge=0, le=10, validation_alias=_env("EMBEDDING_MAX_RETRIES"))

    # Admin API key: plain locally (DOCUCHAT_ADMIN_KEY), from Secrets Manager in AWS.
    admin_api_key: SecretStr | None = Field(None, validation_alias=_env("DOCUCHAT_ADMIN_KEY"))
    admin_key_secret_arn: str | None = Field(None, validation_alias=_env("DOCUCHAT_ADMIN_KEY_SECRET_ARN"))

    # Billing: Tomans per 1,000 tokens by model; "default" prices any model not listed.
    # A number prices input and output alike; {"input": x, "output": y} prices them apart.
    prices: dict[str, int | ModelPrice] = Field(
        default_factory=_default_prices, validation_alias=_env("DOCUCHAT_PRICES")
    )
    billing_timezone: str = Field("Asia/Tehran", validation_alias=_env("DOCUCHAT_BILLING_TIMEZONE"))
    mail_sender: str = Field("billing@docuchat.local", validation_alias=_env("DOCUCHAT_MAIL_SENDER"))
    zibal_base_url: str = Field("https://gateway.zibal.ir", validation_alias=_env("DOCUCHAT_ZIBAL_BASE_URL"))
    # "zibal" is Zibal's sandbox merchant; in AWS the real one comes from Secrets Manager.
    zibal_merchant: str = Field("zibal", validation_alias=_env("DOCUCHAT_ZIBAL_MERCHANT"))
    zibal_merchant_secret_arn: str | None = Field(None, validation_alias=_env("DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"))
    zibal_timeout_seconds: float = Field(10.0, gt=0, validation_alias=_env("DOCUCHAT_ZIBAL_TIMEOUT_SECONDS"))
    # Where Zibal sends the payer back: the public API's base URL.
    public_base_url: str = Field("http://127.0.0.1:8000", validation_alias=_env("DOCUCHAT_PUBLIC_BASE_URL"))

    # How many of a batch's group transactions metering sends at once. moto's TransactWriteItems is not
    # thread-safe, so the local runtime and the moto-backed tests set 1.
    metering_concurrency: int = Field(8, ge=1, le=32, validation_alias=_env("DOCUCHAT_METERING_CONCURRENCY"))

    # Limits on what a caller may send.
    max_request_bytes: int = Field(2_000_000, gt=0, validation_alias=_env("DOCUCHAT_MAX_REQUEST_BYTES"))
    max_message_chars: int = Field(8_000, gt=0, validation_alias=_env("DOCUCHAT_MAX_MESSAGE_CHARS"))
    max_document_chars: int = Field(4_000_000, gt=0, validation_alias=_env("DOCUCHAT_MAX_DOCUMENT_CHARS"))
    max_upload_bytes: int = Field(25 * 1024 * 1024, gt=0, validation_alias=_env("DOCUCHAT_MAX_UPLOAD_BYTES"))
    max_pdf_pages: int = Field(2_000, gt=0, validation_alias=_env("DOCUCHAT_MAX_PDF_PAGES"))
    upload_url_seconds: int = Field(900, ge=60, le=3600, validation_alias=_env("DOCUCHAT_UPLOAD_URL_SECONDS"))
    retrieval_top_k: int = Field(5, ge=1, le=20, validation_alias=_env("DOCUCHAT_RETRIEVAL_TOP_K"))
    # A chunk counts as relevant when its vector is this similar to the question's, or when it holds this
    # share of the question's keyword weight; with none relevant, the answer says it does not know.
    retrieval_min_similarity: float = Field(
        0.3, ge=-1, le=1, validation_alias=_env("DOCUCHAT_RETRIEVAL_MIN_SIMILARITY")
    )
    retrieval_min_keyword_coverage: float = Field(
        0.5, ge=0, le=1, validation_alias=_env("DOCUCHAT_RETRIEVAL_MIN_KEYWORD_COVERAGE")
    )
    # How long a warm function trusts a key and a tenant it has read: how long a revocation may take to bite.
    credential_cache_seconds: float = Field(0, ge=0, le=300, validation_alias=_env("DOCUCHAT_CREDENTIAL_CACHE_SECONDS"))
    # How long a warm function uses a tenant's index without re-reading its manifest version: how long a new
    # document may take to answer there (decision 17).
    index_trust_seconds: float = Field(0, ge=0, le=60, validation_alias=_env("DOCUCHAT_INDEX_TRUST_SECONDS"))
    # Rows of warm per-tenant indexes one chat process keeps (~1.9 KB a row at 1,536 dimensions, plus ~8 bytes a
    # distinct term a chunk). A tenant with more is refused (503 index_too_large) rather than let run the function
    # out of memory; stacks/stage_config.py sets it from the chat functions' memory (docs/decisions/0011).
    index_cache_rows: int = Field(150_000, ge=1_000, validation_alias=_env("DOCUCHAT_INDEX_CACHE_ROWS"))
    # Manifest updates compaction makes at once (moto's DynamoDB is not thread-safe: the tests set 1).
    vector_write_concurrency: int = Field(8, ge=1, le=64, validation_alias=_env("DOCUCHAT_VECTOR_WRITE_CONCURRENCY"))
    # Ingestion hands the rest of a document to a new message when less than this much time is left.
    ingestion_time_margin_seconds: int = Field(
        60, ge=5, le=600, validation_alias=_env("DOCUCHAT_INGESTION_TIME_MARGIN_SECONDS")
    )
    # Limits every tenant has unless it has its own: JSON {"requests_per_minute", "requests_per_hour",
    # "monthly_token_budget"}, null for unlimited (stage setting default_limits).
    default_limits: Limits = Field(default_factory=Limits, validation_alias=_env("DOCUCHAT_DEFAULT_LIMITS"))
    audit_retention_days: int = Field(400, ge=1, le=3650, validation_alias=_env("DOCUCHAT_AUDIT_RETENTION_DAYS"))
    # Origins the browser may call the API from (locally; in AWS API Gateway and the Function URL answer CORS).
    cors_origins: str = Field("", validation_alias=_env("DOCUCHAT_CORS_ORIGINS"))
    # Calls to tenants' URLs (JWKS, webhooks) may reach loopback: locally and in tests only (unset: emulated AWS).
    outbound_allow_loopback: bool | None = Field(None, validation_alias=_env("DOCUCHAT_OUTBOUND_ALLOW_LOOPBACK"))
    outbound_timeout_seconds: float = Field(10.0, gt=0, le=30, validation_alias=_env("DOCUCHAT_OUTBOUND_TIMEOUT"))
    history_turns: int = Field(6, ge=0, le=50, validation_alias=_env("DOCUCHAT_HISTORY_TURNS"))
    conversation_ttl_days: int = Field(30, gt=0, validation_alias=_env("DOCUCHAT_CONVERSATION_TTL_DAYS"))

    @field_validator("prices")
    @classmethod
    def _has_default_price(cls, prices: dict[str, int | ModelPrice]) -> dict[str, int | ModelPrice]:
        if "default" not in prices:
            raise ValueError("DOCUCHAT_PRICES needs a 'default' entry")
        return prices

    @model_validator(mode="before")
    @classmethod
    def _stage_resource_names(cls, data: Any) -> Any:
        """Tables and queues not named explicitly get the stage's names, as CDK names them."""
        if not isinstance(data, dict):
            return data
        stage = data.get("DOCUCHAT_STAGE") or data.get("stage") or "local"
        for field_name, spec in (
            ("tenants_table", resources.TENANTS),
            ("documents_table", resources.DOCUMENTS),
            ("conversations_table", resources.CONVERSATIONS),
            ("usage_table", resources.USAGE),
            ("billing_table", resources.BILLING),
            ("audit_table", resources.AUDIT),
        ):
            if not data.get(spec.env_var) and not data.get(field_name):
                data[field_name] = spec.physical_name(stage)
        return data

    @property
    def allows_loopback(self) -> bool:
        """Loopback is a fine webhook or JWKS host locally (emulated AWS), never in a deployed stage."""
        if self.outbound_allow_loopback is not None:
            return self.outbound_allow_loopback
        return self.aws_endpoint_url is not None

    @property
    def cors_origin_list(self) -> list[str]:
        return _split(self.cors_origins)

    @property
    def llm_chain(self) -> list[str]:
        """LLM_MODEL, then the fallbacks, each once."""
        return _unique([self.llm_model, *_split(self.llm_fallback_model)])

    @property
    def llm_allowed(self) -> list[str]:
        """Every model a tenant may ask for: the chain first, then the other allowed ones."""
        return _unique([*self.llm_chain, *_split(self.llm_allowed_models)])

    @property
    def llm_enabled(self) -> bool:
        return self.openai_api_key is not None and bool(self.openai_api_key.get_secret_value())

    def with_secrets(self, openai_api_key: str | None, admin_api_key: str | None) -> Settings:
        """A copy with secrets fetched at cold start filled in."""
        updates: dict[str, Any] = {}
        if openai_api_key:
            updates["openai_api_key"] = SecretStr(openai_api_key)
        if admin_api_key:
            updates["admin_api_key"] = SecretStr(admin_api_key)
        return self.model_copy(update=updates)


def _split(names: str) -> list[str]:
    return [name.strip() for name in names.split(",") if name.strip()]


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
