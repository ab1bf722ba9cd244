"""DocuChat's domain errors: one small hierarchy, mapped to HTTP in one place (functions/chat/errors.py).

Each error carries a stable machine-readable `code` that clients can switch on; the message is for people.
"""

from __future__ import annotations


class DocuChatError(Exception):
    code = "internal_error"

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param  # the request field at fault, when one is (OpenAI's error shape names it)
        if code is not None:
            self.code = code


class InvalidInput(DocuChatError):
    code = "invalid_request"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"


class Unauthorized(DocuChatError):
    code = "unauthorized"


class Forbidden(DocuChatError):
    code = "forbidden"


class NotFound(DocuChatError):
    code = "not_found"


class ModelNotFound(NotFound):
    """A model the tenant may not ask for, or that does not exist."""

    code = "model_not_found"


class Conflict(DocuChatError):
    code = "conflict"


class UpstreamFailed(DocuChatError):
    """A dependency (LLM, payment gateway) failed after its retries."""

    code = "upstream_failed"


class ServiceUnavailable(DocuChatError):
    """A dependency (DynamoDB, SQS) cannot take the request now; the same request may succeed in a moment."""

    code = "service_unavailable"


class TooManyRequests(DocuChatError):
    """Refused for now; `retry_after` seconds from now it may pass. `headers` go on the reply as they are."""

    code = "too_many_requests"

    def __init__(self, message: str, retry_after: int = 1, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.headers = headers or {}


class RateLimited(TooManyRequests):
    code = "rate_limited"


class BudgetExhausted(TooManyRequests):
    """The tenant's monthly token budget is spent (it comes back with the next period)."""

    code = "budget_exhausted"
