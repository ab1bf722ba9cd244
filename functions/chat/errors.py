"""The one place errors become HTTP responses: {"error": {"code", "message"}}, a 4xx for bad input.

On the OpenAI-compatible door (/v1/chat/completions, /v1/models) the same errors take OpenAI's shape,
{"error": {"message", "type", "param", "code"}}, so its SDKs raise the exception a caller expects.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.data.aws import is_unavailable
from shared.errors import (
    Conflict,
    DocuChatError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
    UpstreamFailed,
)
from shared.observability import logger

STATUS_BY_ERROR: dict[type[DocuChatError], int] = {
    PayloadTooLarge: 413,
    InvalidInput: 400,
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    UpstreamFailed: 502,
    ServiceUnavailable: 503,
    TooManyRequests: 429,
}
RETRY_AFTER_SECONDS = "1"  # a dependency that could not take a request now usually can a moment later
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


OPENAI_DOOR = ("/v1/chat/completions", "/v1/models")
# OpenAI's error `type` by status; its SDKs pick the exception by status (401 AuthenticationError, 429 ...).
_OPENAI_TYPES = {401: "invalid_request_error", 403: "permission_error", 429: "rate_limit_exceeded"}
# OpenAI's `code` where it has its own name for ours.
_OPENAI_CODES = {
    "unauthorized": "invalid_api_key",
    "invalid_request": None,
    "validation_failed": None,
    "rate_limited": "rate_limit_exceeded",
    "budget_exhausted": "insufficient_quota",
}
# OpenAI tells these two 429s apart by type: "requests" for a rate limit, "insufficient_quota" for spent money.
_OPENAI_TYPES_BY_CODE = {"rate_limited": "requests", "budget_exhausted": "insufficient_quota"}


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    request: Request | None = None,
) -> JSONResponse:
    if request is not None and request.url.path.startswith(OPENAI_DOOR):
        error_type = _OPENAI_TYPES_BY_CODE.get(code) or _OPENAI_TYPES.get(
            status, "server_error" if status >= 500 else "invalid_request_error"
        )
        body = {"message": message, "type": error_type, "param": param, "code": _OPENAI_CODES.get(code, code)}
        return JSONResponse({"error": body}, status_code=status, headers=headers)
    detail = {"code": code, "message": message} | ({"param": param} if param else {})
    return JSONResponse({"error": detail}, status_code=status, headers=headers)


def status_of(error: DocuChatError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def _describe(errors: list[dict[str, Any]]) -> tuple[str, str]:
    if any(e.get("type") == "json_invalid" for e in errors):
        return "invalid_json", "the request body is not valid JSON"
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        parts.append(f"{where}: {e.get('msg', 'invalid')}")
    return "validation_failed", "; ".join(parts)


def _allowed_methods(request: Request) -> list[str]:
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def _first_field(errors: list[dict[str, Any]]) -> str | None:
    for e in errors:
        where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path", "header"))
        if where:
            return where
    return None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocuChatError)
    async def domain_error(request: Request, error: DocuChatError) -> JSONResponse:
        status = status_of(error)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": RETRY_AFTER_SECONDS}
        if isinstance(error, TooManyRequests):
            headers = {**error.headers, "Retry-After": str(error.retry_after)}
        return error_response(status, error.code, error.message, headers, error.param, request)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        code, message = _describe(list(error.errors()))
        openai_door = request.url.path.startswith(OPENAI_DOOR)  # OpenAI answers every malformed request with 400
        status = 400 if code == "invalid_json" or openai_door else 422
        return error_response(status, code, message, param=_first_field(list(error.errors())), request=request)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        headers = dict(error.headers) if error.headers else None
        if error.status_code == 405:  # every method the path takes, not only those of the first route that matched
            headers = {**(headers or {}), "Allow": ", ".join(_allowed_methods(request))}
        return error_response(error.status_code, code, str(error.detail), headers, request=request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_unavailable(error):  # DynamoDB or SQS down, throttling, a conflict: try again, not a bug
            logger.warning("a dependency is unavailable", extra={"error": f"{type(error).__name__}: {error}"})
            unavailable = ServiceUnavailable("a service DocuChat depends on is unavailable; retry in a moment")
            return await domain_error(request, unavailable)
        logger.exception("unhandled error")
        return error_response(
            500, "internal_error", "an unexpected error occurred; it has been logged", request=request
        )
