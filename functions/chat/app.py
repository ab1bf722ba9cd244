"""The chat function's FastAPI app. Routes stay thin: parse, call a service in shared/, shape the reply."""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from functions.chat.errors import error_response, install_error_handlers
from functions.chat.openapi import add_error_schemas
from functions.chat.routes import (
    account,
    admin,
    billing,
    chat,
    completions,
    documents,
    health,
    payments,
    tickets,
    webhooks,
)
from shared.container import Container
from shared.errors import PayloadTooLarge
from shared.observability import REQUEST_ERRORS, REQUEST_LATENCY, begin_request, count, logger
from shared.resources import CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS

DESCRIPTION = """Multi-tenant document chat. Tenant calls send `Authorization: Bearer <api key>` (or `X-API-Key`);
admin calls send the admin key the same way. Errors are `{"error": {"code", "message"}}`."""


class BodySizeLimit:
    """Rejects request bodies over the limit with 413, whether or not they declare a Content-Length."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            response = error_response(413, "payload_too_large", f"the request body is over {self.max_bytes} bytes")
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Any:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise PayloadTooLarge(f"the request body is over {self.max_bytes} bytes")
            return message

        await self.app(scope, limited_receive, send)


class RequestLogKeys:
    """Starts each request's own log keys (see shared.observability.tag_request)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            begin_request()
        await self.app(scope, receive, send)


class RequestMetrics:
    """Each request's latency (its sample count is the request count) and each 5xx, by route group: the route's
    first OpenAPI tag, about ten values, so the metrics stay few (a path or a tenant would make one a value).

    And one log line a request, with the request's keys (tenant_id, key_id, correlation_id): the streaming door
    has no API Gateway access log, and the HTTP API's cannot know the tenant."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes every handler is answered as a 500 by the server

        async def noting_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noting_status)
        finally:
            route, latency_ms = route_group(scope), (time.perf_counter() - started) * 1000
            count(REQUEST_LATENCY, latency_ms, "Milliseconds", route=route)
            if status >= 500:
                count(REQUEST_ERRORS, 1, route=route)
            logger.info(
                "request handled",
                extra={
                    "method": scope.get("method"),
                    "route": route,
                    "status": status,
                    "latency_ms": round(latency_ms),
                },
            )


def route_group(scope: Any) -> str:
    """The matched route's first tag ("chat", "documents", "admin", ...); "unmatched" when no route matched."""
    route = scope.get("route")  # FastAPI puts the matched route in the scope
    tags = getattr(route, "tags", None) or []
    if route is None:
        return "unmatched"
    return str(tags[0]) if tags else "other"


class RateLimitHeaders:
    """Puts the caller's X-RateLimit-* headers (set by deps.principal) on its reply, streamed replies included."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Any) -> None:
            extra = (scope.get("state") or {}).get("rate_headers")
            if message["type"] == "http.response.start" and extra:
                present = {name.lower() for name, _ in message.get("headers", [])}
                added = [
                    (k.lower().encode(), v.encode()) for k, v in extra.items() if k.lower().encode() not in present
                ]
                message = {**message, "headers": [*message.get("headers", []), *added]}
            await send(message)

        await self.app(scope, receive, with_headers)


def create_app(container: Container) -> FastAPI:
    app = FastAPI(title="DocuChat", version="1.0.0", description=DESCRIPTION)
    app.state.container = container
    install_error_handlers(app)
    for module in (health, account, chat, completions, documents, billing, tickets, webhooks, payments, admin):
        app.include_router(module.router)
    generate_openapi = app.openapi

    def openapi() -> dict[str, Any]:  # FastAPI's document (built once), with the error bodies' schemas
        return app.openapi_schema or add_error_schemas(generate_openapi())

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_middleware(BodySizeLimit, max_bytes=container.settings.max_request_bytes)
    app.add_middleware(RateLimitHeaders)
    if container.settings.cors_origin_list:  # locally; in AWS API Gateway and the Function URL answer CORS
        app.add_middleware(
            CORSMiddleware,
            allow_origins=container.settings.cors_origin_list,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=list(CORS_ALLOWED_HEADERS),
            expose_headers=list(CORS_EXPOSED_HEADERS),
            max_age=600,
        )
    app.add_middleware(RequestMetrics)
    app.add_middleware(RequestLogKeys)  # added last, so it runs first
    return app
