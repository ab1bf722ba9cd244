"""The composition root: builds each function's services from settings, lazily and once per process."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from shared.access.administration import TenantAdministration
from shared.access.audit import AuditTrail
from shared.access.authenticator import Authenticator, RecentlyRead
from shared.access.budgets import BudgetService, TenantBudgets
from shared.access.limits import RateLimiter
from shared.access.tokens import JwksCache, TokenVerifier
from shared.billing import BillingService, PriceTable, parse_prices
from shared.chat.cache import ResponseCache
from shared.chat.completions import CompletionsService
from shared.chat.followups import QueryRewriter
from shared.chat.responders import OpenAIUpstream
from shared.chat.router import Breakers, ModelRouter, RetryPolicy
from shared.chat.service import ChatService
from shared.data.audit import AuditRepository
from shared.data.aws import AwsClients
from shared.data.billing import BillingRepository
from shared.data.blobs import BlobStore
from shared.data.cache import ResponseCacheStore
from shared.data.conversations import ConversationRepository
from shared.data.documents import DocumentRepository
from shared.data.limits import BudgetStore, RateCounters
from shared.data.messaging import (
    IngestionQueue,
    LambdaBillingRunner,
    Mailer,
    SecretReader,
    TopicPublisher,
    UsageQueue,
)
from shared.data.openai import OpenAIConnections
from shared.data.outbound import OutboundHttp, OutboundPolicy
from shared.data.tenants import TenantRepository
from shared.data.tickets import TicketRepository
from shared.data.usage import UsageOutbox, UsageRepository
from shared.data.vectors import S3VectorStore
from shared.data.webhooks import WebhookQueue, WebhookRepository
from shared.data.zibal import ZibalGateway
from shared.documents import DocumentService
from shared.embeddings import Embedder, build_embedder
from shared.escalation.tickets import TicketService
from shared.ids import utc_now
from shared.ingestion import IngestionService
from shared.lazy import lazy
from shared.metering import DurableUsageSink, KnownTenants, MeteringService
from shared.payments import PaymentService
from shared.reconciliation import Reconciler
from shared.retrieval import HybridRetriever
from shared.settings import UNSET_SECRET, Settings
from shared.webhooks.notices import BudgetNotices
from shared.webhooks.service import WebhookDeliverer, WebhookEmitter, WebhookSettings

CALLBACK_PATH = "/v1/payments/zibal/callback"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with secrets from Secrets Manager when their ARNs are set."""
    settings = Settings(**overrides)
    arns = (settings.openai_secret_arn, settings.admin_key_secret_arn, settings.zibal_merchant_secret_arn)
    if not any(arns):
        return settings
    reader = SecretReader(AwsClients(settings).secrets)
    # A secret still holding the deploy-time placeholder counts as unset: no key means the extractive responder.
    openai_key, admin_key, merchant = (
        value if arn and (value := reader.read(arn)) != UNSET_SECRET else None for arn in arns
    )
    settings = settings.with_secrets(openai_api_key=openai_key, admin_api_key=admin_key)
    return settings.model_copy(update={"zibal_merchant": merchant}) if merchant else settings


class Container:
    def __init__(self, settings: Settings, clock: Callable[[], datetime] = utc_now) -> None:
        self.settings = settings
        self.clock = clock
        self.aws = AwsClients(settings)

    # Repositories and adapters
    @lazy
    def tenants(self) -> TenantRepository:
        return TenantRepository(self.aws.dynamodb, self.settings.tenants_table)

    @lazy
    def documents(self) -> DocumentRepository:
        return DocumentRepository(self.aws.dynamodb, self.settings.documents_table)

    @lazy
    def conversations(self) -> ConversationRepository:
        return ConversationRepository(self.aws.dynamodb, self.settings.conversations_table)

    @lazy
    def usage(self) -> UsageRepository:
        return UsageRepository(self.aws.dynamodb, self.settings.usage_table)

    @lazy
    def billing(self) -> BillingRepository:
        return BillingRepository(self.aws.dynamodb, self.settings.billing_table)

    @lazy
    def usage_queue(self) -> UsageQueue:
        return UsageQueue(self.aws.sqs, self.settings.usage_queue_url)

    @lazy
    def outbox(self) -> UsageOutbox:
        return UsageOutbox(self.aws.dynamodb, self.settings.usage_table)

    @lazy
    def usage_sink(self) -> DurableUsageSink:
        return DurableUsageSink(self.usage_queue, self.outbox, self.clock)

    @lazy
    def blobs(self) -> BlobStore:
        return BlobStore(self.aws.s3, self.settings.documents_bucket)

    @lazy
    def openai_connections(self) -> OpenAIConnections:
        """The connection pool the embedder and the chat models share (nothing is built until a call needs it)."""
        return OpenAIConnections()

    @lazy
    def embedder(self) -> Embedder:
        return build_embedder(self.settings, self.openai_connections)

    @lazy
    def vectors(self) -> S3VectorStore:
        """The vector store and its warm per-tenant indexes (kept for the life of the process)."""
        return S3VectorStore(
            self.aws.dynamodb,
            self.settings.documents_table,
            self.aws.s3,
            self.settings.documents_bucket,
            model=self.embedder.model,
            dimensions=self.embedder.dimensions,
            cache_rows=self.settings.index_cache_rows,
            write_concurrency=self.settings.vector_write_concurrency,
            version_trust_seconds=self.settings.index_trust_seconds,
        )

    # Services
    @lazy
    def outbound(self) -> OutboundHttp:
        """Calls to URLs tenants give (JWKS, webhooks), refused where they would reach inside."""
        policy = OutboundPolicy(allow_loopback=self.settings.allows_loopback)
        return OutboundHttp(policy, self.settings.outbound_timeout_seconds)

    @lazy
    def authenticator(self) -> Authenticator:
        admin_key = self.settings.admin_api_key.get_secret_value() if self.settings.admin_api_key else None
        tokens = TokenVerifier(self.tenants, JwksCache(self.outbound))
        return Authenticator(
            self.tenants,
            admin_key,
            tokens,
            self.settings.default_limits,
            self.clock,
            recent=self.recent_credentials,
        )

    @lazy
    def recent_credentials(self) -> RecentlyRead:
        """Keys and tenants this process trusts for a while; its own revocations and suspensions forget them."""
        return RecentlyRead(self.settings.credential_cache_seconds)

    @lazy
    def rate_limiter(self) -> RateLimiter:
        return RateLimiter(RateCounters(self.aws.dynamodb, self.settings.usage_table), self.clock)

    @lazy
    def webhooks_queue(self) -> WebhookQueue:
        return WebhookQueue(self.aws.sqs, self.settings.webhooks_queue_url)

    @lazy
    def webhook_emitter(self) -> WebhookEmitter:
        return WebhookEmitter(self.webhooks_queue, self.clock)

    @lazy
    def webhook_repository(self) -> WebhookRepository:
        return WebhookRepository(self.aws.dynamodb, self.settings.tenants_table, self.settings.conversations_table)

    @lazy
    def webhook_settings(self) -> WebhookSettings:
        return WebhookSettings(self.webhook_repository, self.outbound, self.clock)

    @lazy
    def webhook_deliverer(self) -> WebhookDeliverer:
        def tenant_email(tenant_id: str) -> str | None:
            tenant = self.tenants.get(tenant_id)
            return tenant.email if tenant else None

        return WebhookDeliverer(
            self.webhook_repository,
            self.webhooks_queue,
            self.outbound,
            Mailer(self.aws.ses, self.settings.mail_sender),
            tenant_email,
            self.clock,
        )

    @lazy
    def budgets(self) -> BudgetService:
        return BudgetService(
            BudgetStore(self.aws.dynamodb, self.settings.usage_table),
            BudgetNotices(self.webhook_emitter),
            self.settings.billing_timezone,
            self.clock,
        )

    @lazy
    def tenant_budgets(self) -> TenantBudgets:
        def limit_of(tenant_id: str) -> int | None:
            tenant = self.tenants.get(tenant_id)
            return self.authenticator.limits_of(tenant).monthly_token_budget if tenant else None

        return TenantBudgets(self.budgets, limit_of)

    @lazy
    def tickets(self) -> TicketService:
        return TicketService(
            TicketRepository(self.aws.dynamodb, self.settings.conversations_table),
            TopicPublisher(lambda: self.aws.sns, self.settings.escalations_topic_arn),
            self.webhook_emitter,
            self.clock,
        )

    @lazy
    def administration(self) -> TenantAdministration:
        return TenantAdministration(
            self.tenants, self.audit, self.outbound.policy, self.clock, recent=self.recent_credentials
        )

    @lazy
    def audit(self) -> AuditTrail:
        return AuditTrail(
            AuditRepository(self.aws.dynamodb, self.settings.audit_table),
            self.settings.audit_retention_days,
            self.clock,
        )

    @lazy
    def retriever(self) -> HybridRetriever:
        return HybridRetriever(self.settings, self.vectors, self.embedder, self.documents)

    @lazy
    def model_router(self) -> ModelRouter | None:
        """The model chain, or None without a key (the extractive responder answers). Its breakers last as long
        as the process: across warm invocations."""
        if not self.settings.llm_enabled:
            return None
        settings = self.settings
        return ModelRouter(
            OpenAIUpstream(settings, self.openai_connections),
            Breakers(settings.llm_breaker_failures, settings.llm_breaker_cooldown_seconds),
            RetryPolicy(retries=settings.llm_max_retries, max_wait=settings.llm_retry_max_wait_seconds),
        )

    @lazy
    def query_rewriter(self) -> QueryRewriter:
        return QueryRewriter(self.model_router, lambda: self.settings.llm_chain)

    @lazy
    def chat(self) -> ChatService:
        return ChatService(
            self.settings,
            self.retriever,
            self.conversations,
            self.usage_sink,
            self.model_router,
            ResponseCache(
                ResponseCacheStore(self.aws.dynamodb, self.settings.conversations_table),
                self.settings.llm_cache_ttl_seconds,
                self.clock,
            ),
            self.query_rewriter,
            self.clock,
            budgets=self.budgets,
            tickets=self.tickets,
        )

    @lazy
    def completions(self) -> CompletionsService:
        return CompletionsService(
            self.settings,
            self.retriever,
            self.usage_sink,
            self.model_router,
            self.query_rewriter,
            self.clock,
            budgets=self.budgets,
        )

    @lazy
    def document_service(self) -> DocumentService:
        return DocumentService(
            self.settings,
            self.documents,
            self.blobs,
            self.vectors,
            self.clock,
            IngestionQueue(self.aws.sqs, self.settings.ingestion_queue_url),
        )

    @lazy
    def ingestion(self) -> IngestionService:
        return IngestionService(
            self.settings,
            self.documents,
            self.blobs,
            self.vectors,
            self.embedder,
            self.usage_sink,
            IngestionQueue(self.aws.sqs, self.settings.ingestion_queue_url),
            self.clock,
            budgets=self.tenant_budgets,
        )

    @lazy
    def metering(self) -> MeteringService:
        return MeteringService(
            self.usage,
            self.outbox,
            KnownTenants(self.tenants),
            self.settings.billing_timezone,
            self.clock,
            concurrency=self.settings.metering_concurrency,
        )

    @lazy
    def zibal(self) -> ZibalGateway:
        return ZibalGateway(
            self.settings.zibal_base_url, self.settings.zibal_merchant, self.settings.zibal_timeout_seconds
        )

    @lazy
    def billing_service(self) -> BillingService:
        return BillingService(
            usage=self.usage,
            tenants=self.tenants,
            billing=self.billing,
            prices=PriceTable(parse_prices(self.settings.prices)),
            gateway=self.zibal,
            mailer=Mailer(self.aws.ses, self.settings.mail_sender),
            callback_url=self.settings.public_base_url.rstrip("/") + CALLBACK_PATH,
            clock=self.clock,
            events=self.webhook_emitter,
        )

    @lazy
    def reconciler(self) -> Reconciler:
        return Reconciler(self.usage, self.billing, self.tenants)

    @lazy
    def payments(self) -> PaymentService:
        return PaymentService(self.billing, self.zibal, self.clock)

    def run_billing(self, period: date) -> dict[str, Any]:
        """The admin API's on-demand run: the billing function in AWS, in-process locally."""
        payload = {"source": "docuchat.admin", "date": period.isoformat()}
        if self.settings.billing_function_name:
            return LambdaBillingRunner(self.aws.lambda_, self.settings.billing_function_name).run(payload)
        return self.billing_service.close_day(period, trigger="admin").model_dump(mode="json")


class FunctionServices:
    """A function's container: built from the environment on first use, once per process.

    Tests and the local runtime call `configure` with their own, so nothing reads the environment at import.
    """

    def __init__(self) -> None:
        self._container: Container | None = None

    def configure(self, container: Container) -> None:
        self._container = container

    def get(self) -> Container:
        if self._container is None:
            self._container = Container(load_settings())
        return self._container

    def reset(self) -> None:
        """Forget the container: the next `get` builds a new one (after a SnapStart restore)."""
        self._container = None
