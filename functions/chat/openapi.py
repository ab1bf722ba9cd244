"""What the OpenAPI document says of errors and authentication, so that clients, and schemathesis, can trust it.

Every route declares the errors it can answer, with their body, and the security schemes it takes (a bearer
key or X-API-Key); functions/chat/errors.py is where those errors are made.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable and machine-readable: not_found, rate_limited, validation_failed, ...")
    message: str = Field(description="For people.")
    param: str | None = Field(None, description="The field of the request it is about, when there is one.")


class ErrorBody(BaseModel):
    error: ErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str | None


class OpenAIErrorBody(BaseModel):
    error: OpenAIErrorDetail


_DESCRIPTIONS = {
    400: "Malformed: not JSON, or a value that makes no sense",
    401: "No key, a wrong key, or a revoked key",
    403: "The tenant is suspended, or the key lacks the scope",
    404: "No such resource for this caller",
    405: "Method not allowed (the Allow header says which are)",
    409: "It exists already",
    413: "The body, a message or a document is over its limit",
    415: "The body is not application/json",
    422: "A field is missing, of the wrong type, or out of range",
    429: "Too many requests, or the budget is spent (Retry-After says when to try again)",
    503: "A dependency is unavailable; Retry-After says when to try again",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}}


def errors(*statuses: int, model: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """The error answers, their body a reference to `model`'s schema (which `add_error_schemas` puts in the
    document). Not FastAPI's `"model"`: it builds a pydantic field per status of every route (~470, ~60 ms of
    the chat function's cold start) that only the OpenAPI document reads."""
    body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}
    declared: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        declared[status] = {"description": _DESCRIPTIONS[status], "content": body}
        if status in (429, 503):
            declared[status]["headers"] = _RETRY_AFTER
    return declared


# What any route behind a key may answer besides its own success.
KEYED = (400, 401, 403, 404, 405, 409, 413, 415, 422, 429, 503)
TENANT_ERRORS = errors(*KEYED)
OPENAI_ERRORS = errors(*KEYED, model=OpenAIErrorBody)
PUBLIC_ERRORS = errors(400, 404, 405, 413, 415, 422, 503)


# One Server-Sent Event of a streamed answer (keep-alive comments aside): its name, and its JSON as text.
CHAT_EVENT_SCHEMA = {
    "type": "object",
    "properties": {"event": {"enum": ["citations", "delta", "done", "error"]}, "data": {"type": "string"}},
    "required": ["event", "data"],
}
# OpenAI's chunks: unnamed events whose data is a chat.completion.chunk (or an error), then "[DONE]".
COMPLETION_EVENT_SCHEMA = {"type": "object", "properties": {"data": {"type": "string"}}, "required": ["data"]}


def completion_request_schema(max_tokens_limit: int) -> dict[str, Any]:
    """The JSON schema of a chat completion request, exactly as shared/chat/completions.py checks it."""
    from shared.chat.completions import MAX_MESSAGES, MAX_STOP_SEQUENCES, MAX_TOOLS, ROLES

    text_part = {
        "type": "object",
        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        "required": ["type", "text"],
    }
    message = {
        "type": "object",
        "properties": {
            "role": {"enum": sorted(ROLES)},
            "content": {
                "anyOf": [{"type": "string"}, {"type": "array", "items": text_part, "minItems": 1}, {"type": "null"}]
            },
            "name": {"type": "string"},
            "tool_calls": {"type": "array", "items": {"type": "object"}},
            "tool_call_id": {"type": "string"},
        },
        "required": ["role", "content"],
    }
    tokens = {"anyOf": [{"type": "integer", "minimum": 1, "maximum": max_tokens_limit}, {"type": "null"}]}

    def number(low: float, high: float) -> dict[str, Any]:
        return {"anyOf": [{"type": "number", "minimum": low, "maximum": high}, {"type": "null"}]}

    function_tool = {
        "type": "object",
        "properties": {
            "type": {"const": "function"},
            "function": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        },
        "required": ["type", "function"],
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
            "messages": {"type": "array", "items": message, "minItems": 1, "maxItems": MAX_MESSAGES},
            "stream": {"type": ["boolean", "null"]},
            "stream_options": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"include_usage": {"type": ["boolean", "null"]}},
                        "additionalProperties": False,
                    },
                    {"type": "null"},
                ]
            },
            "temperature": number(0, 2),
            "top_p": number(0, 1),
            "presence_penalty": number(-2, 2),
            "frequency_penalty": number(-2, 2),
            "n": {"enum": [1, None]},
            "max_tokens": tokens,
            "max_completion_tokens": tokens,
            "stop": {
                "anyOf": [
                    {"type": "string"},
                    {"type": "array", "items": {"type": "string"}, "maxItems": MAX_STOP_SEQUENCES},
                    {"type": "null"},
                ]
            },
            "response_format": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"type": {"enum": ["text", "json_object", "json_schema"]}},
                        "required": ["type"],
                    },
                    {"type": "null"},
                ]
            },
            "tools": {"anyOf": [{"type": "array", "items": function_tool, "maxItems": MAX_TOOLS}, {"type": "null"}]},
            "tool_choice": {"anyOf": [{"enum": ["none", "auto", "required"]}, {"type": "object"}, {"type": "null"}]},
            "parallel_tool_calls": {"type": ["boolean", "null"]},
            "seed": {"type": ["integer", "null"]},
            "user": {"type": ["string", "null"]},
            "docuchat": {
                "anyOf": [
                    {
                        "type": "object",
                        "properties": {"use_documents": {"type": ["boolean", "null"]}},
                        "additionalProperties": False,
                        "description": "DocuChat's extension: answer from the tenant's documents, with citations "
                        "in the reply's (or the last chunk's) `docuchat` field.",
                    },
                    {"type": "null"},
                ]
            },
        },
    }


def add_error_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """`document` with the schemas of the error bodies `errors` refers to: FastAPI's own, from a route made (when
    the document is) only to declare them."""
    router = APIRouter()
    router.get("/", responses={400: {"model": ErrorBody}, 401: {"model": OpenAIErrorBody}})(lambda: None)
    schemas = get_openapi(title="", version="", routes=router.routes)["components"]["schemas"]
    document.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
    return document
