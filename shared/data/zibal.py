"""Zibal payment gateway client (amounts in integer Rials): request a payment, verify it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from shared.models import Record

SUCCESS = 100
ALREADY_VERIFIED = 201
VERIFIED_STATUS = 1  # a transaction's status once paid and verified
MIN_AMOUNT_RIALS = 1_000
# Zibal's documented request errors; they are final for a given request, not worth retrying.
REQUEST_ERRORS = {
    102: "merchant not found",
    103: "merchant inactive",
    104: "merchant invalid",
    105: "amount must be at least 1,000 Rials",
    106: "callbackUrl is invalid",
    113: "amount exceeds the transaction limit",
}


class PaymentRequest(Record):
    track_id: str
    payment_url: str


class PaymentRejected(Exception):
    """Zibal refused the request (codes 102-113); the reason is final for this request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"Zibal result {code}: {message}")
        self.code = code
        self.reason = message


class GatewayUnavailable(Exception):
    """Zibal could not be reached or answered garbage; safe to retry later."""


class ZibalGateway:
    def __init__(self, base_url: str, merchant: str, timeout_seconds: float) -> None:
        self._base_url = base_url.rstrip("/")
        self._merchant = merchant
        self._timeout = timeout_seconds

    def request_payment(self, amount_rials: int, order_id: str, description: str, callback_url: str) -> PaymentRequest:
        response = self._post(
            "/v1/request",
            {
                "merchant": self._merchant,
                "amount": amount_rials,
                "callbackUrl": callback_url,
                "description": description,
                "orderId": order_id,
            },
        )
        result = int(response.get("result", -1))
        if result != SUCCESS:
            raise PaymentRejected(result, str(response.get("message") or REQUEST_ERRORS.get(result, "unknown error")))
        track_id = str(response["trackId"])
        return PaymentRequest(track_id=track_id, payment_url=f"{self._base_url}/start/{track_id}")

    def verify(self, track_id: str) -> dict[str, Any]:
        return self._post("/v1/verify", {"merchant": self._merchant, "trackId": int(track_id)})

    def inquiry(self, track_id: str) -> dict[str, Any]:
        return self._post("/v1/inquiry", {"merchant": self._merchant, "trackId": int(track_id)})

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(
            self._base_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Accept": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                payload = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError, ValueError) as error:
            raise GatewayUnavailable(f"Zibal {path} failed: {error}") from error
        if not isinstance(payload, dict):
            raise GatewayUnavailable(f"Zibal {path} answered {type(payload).__name__}, not an object")
        return payload
