"""The one place errors become HTTP responses: {"error": {"code", "message"}}, a 4xx for bad input."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.data.aws import is_unavailable
from shared.errors import (
    Conflict,
    DocuChatError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
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
}
RETRY_AFTER_SECONDS = "1"  # a dependency that could not take a request now usually can a moment later
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 415: "unsupported_media_type"}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DocuChatError)
    async def domain_error(_: Request, error: DocuChatError) -> JSONResponse:
        status = status_of(error)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        if status == 503:
            headers = {"Retry-After": RETRY_AFTER_SECONDS}
        return error_response(status, error.code, error.message, headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, error: RequestValidationError) -> JSONResponse:
        code, message = _describe(list(error.errors()))
        return error_response(400 if code == "invalid_json" else 422, code, message)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return error_response(error.status_code, _HTTP_CODES.get(error.status_code, "http_error"), str(error.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        if is_unavailable(error):  # DynamoDB or SQS down, throttling, a conflict: try again, not a bug
            logger.warning("a dependency is unavailable", extra={"error": f"{type(error).__name__}: {error}"})
            unavailable = ServiceUnavailable("a service DocuChat depends on is unavailable; retry in a moment")
            return await domain_error(request, unavailable)
        logger.exception("unhandled error")
        return error_response(500, "internal_error", "an unexpected error occurred; it has been logged")
