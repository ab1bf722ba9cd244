"""Chat function: API Gateway (HTTP API, payload 2.0) -> Mangum -> the FastAPI app."""

from __future__ import annotations

from typing import Any

from shared.runtime import collector

# The imports are most of a cold start; the collector would only slow them down (shared/runtime/collector.py).
with collector.paused(freeze=True):
    from aws_lambda_powertools.logging import correlation_paths
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mangum import Mangum

    from functions.chat.app import create_app
    from shared.container import Container, FunctionServices
    from shared.observability import logger, metrics, tracer
    from shared.runtime import snapstart

services = FunctionServices()
_asgi: Mangum | None = None
# What the first answer imports lazily (openai above all): imported before a SnapStart snapshot is taken.
FIRST_ANSWER_MODULES = ("openai", "shared.chat.responders", "shared.retrieval", "shared.data.vectors", "jwt")


def configure(container: Container) -> None:
    """Build the app around `container` (tests and the local runtime pass their own)."""
    global _asgi
    services.configure(container)
    _asgi = Mangum(create_app(container), lifespan="off")


def before_snapshot() -> None:
    snapstart.warm_imports(FIRST_ANSWER_MODULES)


def after_restore() -> None:
    """A restored environment starts with no container (so new clients, connections and secrets) and the app
    is built again around the new one."""
    global _asgi
    services.reset()
    _asgi = None
    snapstart.reseed_randomness()


snapstart.register(before_snapshot, after_restore)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP, clear_state=True)
@metrics.log_metrics(capture_cold_start_metric=True)
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if _asgi is None:
        configure(services.get())
    assert _asgi is not None
    return _asgi(event, context)  # type: ignore[arg-type]
