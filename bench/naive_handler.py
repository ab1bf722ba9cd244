"""The baseline of bench/cold_start.py: the chat handler the way a typical team writes it.

Everything happens at import: fastapi, mangum, openai, boto3 and Powertools are imported eagerly, the
Logger/Tracer/Metrics, the boto3 clients and the OpenAI client are built from the environment, and the app is
assembled around them. It then serves requests through the very same FastAPI app and services as
functions/chat/handler.py, so the benchmark compares how a cold start is paid for, not what a request does.
Not deployed; bench only.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import openai
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from fastapi import FastAPI
from mangum import Mangum

from functions.chat.app import create_app
from shared.chat.responders import OpenAIUpstream
from shared.chat.router import Breakers, ModelRouter, RetryPolicy
from shared.container import Container, load_settings
from shared.embeddings import OpenAIEmbedder
from shared.settings import Settings

logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "docuchat"))
tracer = Tracer()
metrics = Metrics()

settings = load_settings()
dynamodb = boto3.client(
    "dynamodb", region_name=settings.region, endpoint_url=settings.dynamodb_endpoint_url or settings.aws_endpoint_url
)
sqs = boto3.client("sqs", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
s3 = boto3.client("s3", region_name=settings.region, endpoint_url=settings.aws_endpoint_url)
llm = openai.OpenAI(
    api_key=os.environ["OPENAI_API_KEY"],
    base_url=settings.openai_base_url,
    timeout=settings.llm_timeout_seconds,
    max_retries=settings.llm_max_retries,
)


class PrebuiltClientUpstream(OpenAIUpstream):
    """The OpenAI upstream around the client built above, so a request builds no second one."""

    def __init__(self, settings: Settings, client: openai.OpenAI) -> None:
        super().__init__(settings)
        self._client = client


class PrebuiltClientEmbedder(OpenAIEmbedder):
    """The OpenAI embedder around the same client."""

    def __init__(self, settings: Settings, client: openai.OpenAI) -> None:
        super().__init__(settings)
        self._client = client


container = Container(settings)
# Fill the container's lazy slots with the eagerly built clients (cached_property caches live in __dict__).
vars(container.aws).update(dynamodb=dynamodb, sqs=sqs, s3=s3)
vars(container)["embedder"] = PrebuiltClientEmbedder(settings, llm)
vars(container)["model_router"] = ModelRouter(
    PrebuiltClientUpstream(settings, llm),
    Breakers(settings.llm_breaker_failures, settings.llm_breaker_cooldown_seconds),
    RetryPolicy(retries=settings.llm_max_retries, max_wait=settings.llm_retry_max_wait_seconds),
)
container.chat  # built now, as an eager handler does  # noqa: B018
app: FastAPI = create_app(container)
asgi = Mangum(app, lifespan="off")


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return asgi(event, context)  # type: ignore[arg-type]
