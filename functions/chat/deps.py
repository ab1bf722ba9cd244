"""FastAPI dependencies: the container, the caller's identity, the request id."""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from shared.access.authenticator import require_scope
from shared.container import Container
from shared.errors import NotFound
from shared.models import ID_PATTERN, Principal, Scope
from shared.observability import tag_request

_ID = re.compile(ID_PATTERN)
DEFAULT_PAGE = 50
MAX_PAGE = 200


# Dependencies that do no I/O are `async def`: FastAPI runs a plain `def` on a worker thread, a hop each.


async def container(request: Request) -> Container:
    return request.app.state.container


# The two ways to present a key, declared as security schemes (either one will do) in the OpenAPI document.
_bearer = HTTPBearer(auto_error=False, scheme_name="bearerKey", description="`Authorization: Bearer <key>`")
_api_key = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKeyHeader", description="`X-API-Key: <key>`"
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKeyHeader = Annotated[str | None, Depends(_api_key)]


def _presented_key(bearer: HTTPAuthorizationCredentials | None, x_api_key: str | None) -> str | None:
    if x_api_key:
        return x_api_key.strip()
    return bearer.credentials.strip() if bearer else None


def principal(
    request: Request, services: Annotated[Container, Depends(container)], bearer: Bearer, x_api_key: ApiKeyHeader
) -> Principal:
    """The caller, authenticated and counted against its rate limits (the reply says where it stands)."""
    caller = services.authenticator.tenant(_presented_key(bearer, x_api_key))
    tag_request(tenant_id=caller.tenant_id, key_id=caller.key_id)  # every log line of the request says whose
    status = services.rate_limiter.check(caller)
    if status is not None:
        request.state.rate_headers = status.headers()  # added to the reply by RateLimitHeaders (app.py)
    return caller


def scoped(scope: Scope) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, who must hold `scope` (403 otherwise)."""

    async def check(caller: Annotated[Principal, Depends(principal)]) -> Principal:
        require_scope(caller, scope)
        return caller

    return check


def admin(services: Annotated[Container, Depends(container)], bearer: Bearer, x_api_key: ApiKeyHeader) -> None:
    services.authenticator.admin(_presented_key(bearer, x_api_key))


async def request_id(request: Request, idempotency_key: Annotated[str | None, Header(max_length=128)] = None) -> str:
    """The client's Idempotency-Key when given (a retry then repeats it), else API Gateway's request id."""
    if idempotency_key:
        return idempotency_key
    event = request.scope.get("aws.event") or {}
    return str(event.get("requestContext", {}).get("requestId") or uuid.uuid4())


Services = Annotated[Container, Depends(container)]
Caller = Annotated[Principal, Depends(principal)]
# The caller with the scope a route needs.
Chatter = Annotated[Principal, Depends(scoped(Scope.CHAT))]
DocumentReader = Annotated[Principal, Depends(scoped(Scope.DOCUMENTS_READ))]
DocumentWriter = Annotated[Principal, Depends(scoped(Scope.DOCUMENTS_WRITE))]
UsageReader = Annotated[Principal, Depends(scoped(Scope.USAGE_READ))]
TicketHandler = Annotated[Principal, Depends(scoped(Scope.TICKETS))]
WebhookManager = Annotated[Principal, Depends(scoped(Scope.WEBHOOKS))]
RequestId = Annotated[str, Depends(request_id)]


def known_id(value: str, what: str) -> str:
    """A path id; one that cannot exist is simply not found (never a server error)."""
    if not _ID.match(value):
        raise NotFound(f"{what} {value} not found")
    return value


class PageRequest(BaseModel):
    limit: int
    cursor: str | None


async def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Items a page (at most 200).")] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(max_length=4096, description="`next_cursor` of the previous page, as it was given.")
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor or None)


PageParams = Annotated[PageRequest, Depends(page_request)]
