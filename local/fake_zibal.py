"""A local fake of the Zibal payment gateway, following its public API; amounts are integer Rials.

    with FakeZibal() as zibal:  # point DOCUCHAT_ZIBAL_BASE_URL at zibal.base_url
        ...

Like Zibal, business outcomes come back as HTTP 200 with a `result` code:

- POST /v1/request {merchant, amount, callbackUrl, description?, orderId?, mobile?} → 100 and a trackId, or
  102 (merchant missing or unknown), 105 (amount missing, not an integer, or under 1,000 Rials),
  106 (callbackUrl missing or not http(s)), 113 (amount over `max_amount`).
- GET /start/{trackId} plays the payer: a waiting payment becomes paid (status 2) and the answer is a 302 to the
  callbackUrl with success=1, status, trackId and orderId. `?cancel=1` cancels (status 3, success=0); `?status=N`
  ends it with Zibal's failure status N (3-12). A payment no longer waiting is left as it is and redirected again.
- POST /v1/verify {merchant, trackId} → 100 once for a paid payment (it becomes status 1, verified), then 201
  with the same fields; 202 if not paid (waiting, cancelled, failed); 203 for an unknown trackId or one that
  belongs to another merchant; 102 for an unknown merchant.
- POST /v1/inquiry {merchant, trackId} → 100 with the status (-1 waiting, 1 verified, 2 paid and not verified,
  3 cancelled, ...), amount, orderId, paidAt, verifiedAt; 203 / 102 as for verify.

A body that is not a JSON object gets HTTP 400 {"result": -1, "message": ...}; unknown paths 404.
"""

from __future__ import annotations

import argparse
import itertools
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from local._http_fake import FakeRequest, FakeResponse, LoopbackFake, run_cli

SANDBOX_MERCHANT = "zibal"
MIN_AMOUNT = 1_000
DEFAULT_MAX_AMOUNT = 5_000_000_000
CARD_NUMBER = "62741****44"

# Results (the `result` field).
SUCCESS = 100
MERCHANT_NOT_FOUND = 102
AMOUNT_TOO_SMALL = 105
INVALID_CALLBACK_URL = 106
AMOUNT_OVER_LIMIT = 113
ALREADY_VERIFIED = 201
NOT_PAID = 202
INVALID_TRACK_ID = 203
MALFORMED = -1

# Transaction statuses (the `status` field).
WAITING = -1
VERIFIED = 1
PAID = 2
CANCELLED = 3
FAILURE_STATUSES = range(3, 13)  # 3 cancelled by the payer, 4-12 card and bank failures


@dataclass
class ZibalTransaction:
    track_id: int
    merchant: str
    amount: int
    callback_url: str
    description: str | None
    order_id: str | None
    mobile: str | None
    created_at: datetime
    status: int = WAITING
    paid_at: datetime | None = None
    verified_at: datetime | None = None
    ref_number: int | None = None

    def fields(self) -> dict[str, Any]:
        """What verify and inquiry report about it."""
        paid = self.paid_at is not None
        return {
            "status": self.status,
            "amount": self.amount,
            "orderId": self.order_id,
            "description": self.description,
            "paidAt": self.paid_at.isoformat() if self.paid_at else None,
            "verifiedAt": self.verified_at.isoformat() if self.verified_at else None,
            "cardNumber": CARD_NUMBER if paid else None,
            "refNumber": self.ref_number,
        }

    def callback(self) -> str:
        """The callbackUrl with Zibal's query: success, status, trackId, orderId (when it has one)."""
        params: dict[str, str | int] = {
            "success": int(self.status in (PAID, VERIFIED)),
            "status": self.status,
            "trackId": self.track_id,
        }
        if self.order_id is not None:
            params["orderId"] = self.order_id
        url = urlsplit(self.callback_url)
        query = urlencode([*parse_qsl(url.query, keep_blank_values=True), *params.items()])
        return urlunsplit(url._replace(query=query))


def _result(code: int, message: str, **extra: Any) -> FakeResponse:
    return FakeResponse(200, {"result": code, "message": message, **extra})


class FakeZibal(LoopbackFake):
    """Zibal on 127.0.0.1 (port 0 picks a free one). `base_url` is what DOCUCHAT_ZIBAL_BASE_URL takes.

    `calls` holds (path, body) for every request, the query parameters standing in for the body of a GET;
    `transactions` maps trackId to its ZibalTransaction.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        delay_seconds: float = 0.0,
        merchants: Collection[str] = (SANDBOX_MERCHANT,),
        max_amount: int = DEFAULT_MAX_AMOUNT,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(port=port, delay_seconds=delay_seconds)
        self.merchants = frozenset(merchants)
        self.max_amount = max_amount
        self.clock = clock
        self.calls: list[tuple[str, Any]] = []
        self.transactions: dict[int, ZibalTransaction] = {}
        self._lock = threading.Lock()
        self._track_ids = itertools.count(3_000_000_001)
        self._ref_numbers = itertools.count(700_001)

    # -- helpers for tests -------------------------------------------------------------------------------------

    def pay(self, track_id: int) -> str:
        """The payer pays, without HTTP; returns the callback URL the gateway would redirect to."""
        return self._finish(int(track_id), PAID)

    def cancel(self, track_id: int) -> str:
        """The payer cancels, without HTTP; returns the callback URL the gateway would redirect to."""
        return self._finish(int(track_id), CANCELLED)

    def payment_url(self, track_id: int) -> str:
        return f"{self.base_url}/start/{track_id}"

    # -- HTTP ------------------------------------------------------------------------------------------------------

    def record(self, request: FakeRequest) -> None:
        body = request.json_or_none() if request.method == "POST" else dict(request.query)
        self.calls.append((request.path, body))

    def failure_response(self, status: int) -> FakeResponse:
        return FakeResponse(status, {"message": f"injected failure ({status})"})

    def handle(self, request: FakeRequest) -> FakeResponse:
        if request.path.startswith("/start/"):
            if request.method != "GET":
                return FakeResponse(405, {"message": "method not allowed"})
            return self._start(request.path.removeprefix("/start/"), request.query)
        routes = {"/v1/request": self._request, "/v1/verify": self._verify, "/v1/inquiry": self._inquiry}
        route = routes.get(request.path)
        if route is None:
            return FakeResponse(404, {"message": "not found"})
        if request.method != "POST":
            return FakeResponse(405, {"message": "method not allowed"})
        body = request.json_or_none()
        if not isinstance(body, dict):
            return FakeResponse(400, {"result": MALFORMED, "message": "the body must be a JSON object"})
        return route(body)

    def _request(self, body: dict[str, Any]) -> FakeResponse:
        rejection = self._check_payment_request(body)
        if rejection is not None:
            return _result(*rejection)
        order_id = body.get("orderId")
        with self._lock:
            track_id = next(self._track_ids)
            self.transactions[track_id] = ZibalTransaction(
                track_id=track_id,
                merchant=body["merchant"],
                amount=body["amount"],
                callback_url=body["callbackUrl"],
                description=body.get("description"),
                order_id=None if order_id is None else str(order_id),
                mobile=body.get("mobile"),
                created_at=self.clock(),
            )
        return _result(SUCCESS, "success", trackId=track_id)

    def _check_payment_request(self, body: dict[str, Any]) -> tuple[int, str] | None:
        merchant, amount, callback_url = body.get("merchant"), body.get("amount"), body.get("callbackUrl")
        if not isinstance(merchant, str) or not merchant:
            return MERCHANT_NOT_FOUND, "merchant is required"
        if merchant not in self.merchants:
            return MERCHANT_NOT_FOUND, "merchant not found"
        if amount is None:
            return AMOUNT_TOO_SMALL, "amount is required (integer Rials, at least 1,000)"
        if isinstance(amount, bool) or not isinstance(amount, int):
            return AMOUNT_TOO_SMALL, "amount must be an integer number of Rials"
        if amount < MIN_AMOUNT:
            return AMOUNT_TOO_SMALL, "amount must be at least 1,000 Rials"
        if amount > self.max_amount:
            return AMOUNT_OVER_LIMIT, "amount exceeds the transaction limit"
        if not isinstance(callback_url, str) or not callback_url:
            return INVALID_CALLBACK_URL, "callbackUrl is required"
        if not callback_url.startswith(("http://", "https://")):
            return INVALID_CALLBACK_URL, "callbackUrl is invalid: it must start with http or https"
        return None

    def _start(self, raw_track_id: str, query: dict[str, str]) -> FakeResponse:
        status = PAID
        if query.get("cancel") == "1":
            status = CANCELLED
        elif "status" in query:
            status = int(query["status"]) if query["status"].isdigit() else -1
            if status not in FAILURE_STATUSES:
                return FakeResponse(400, {"message": "status must be a failure status, 3-12"})
        if not raw_track_id.isdigit() or int(raw_track_id) not in self.transactions:
            return FakeResponse(404, {"message": "transaction not found"})
        return FakeResponse(302, headers={"Location": self._finish(int(raw_track_id), status)})

    def _finish(self, track_id: int, status: int) -> str:
        """Ends a waiting payment with `status` (a later call changes nothing); returns its callback URL."""
        with self._lock:
            transaction = self.transactions[track_id]
            if transaction.status == WAITING:
                transaction.status = status
                if status == PAID:
                    transaction.paid_at = self.clock()
                    transaction.ref_number = next(self._ref_numbers)
            return transaction.callback()

    def _find(self, body: dict[str, Any]) -> ZibalTransaction | FakeResponse:
        if body.get("merchant") not in self.merchants:
            return _result(MERCHANT_NOT_FOUND, "merchant not found")
        raw = body.get("trackId")
        track_id = int(raw) if isinstance(raw, int | str) and str(raw).isdigit() else None
        transaction = self.transactions.get(track_id) if track_id is not None else None
        if transaction is None or transaction.merchant != body["merchant"]:
            return _result(INVALID_TRACK_ID, "trackId is invalid")
        return transaction

    def _verify(self, body: dict[str, Any]) -> FakeResponse:
        found = self._find(body)
        if isinstance(found, FakeResponse):
            return found
        with self._lock:
            if found.status == PAID:
                found.status, found.verified_at = VERIFIED, self.clock()
                return _result(SUCCESS, "success", **found.fields())
            if found.status == VERIFIED:
                return _result(ALREADY_VERIFIED, "already verified", **found.fields())
            return _result(NOT_PAID, "order not paid or unsuccessful", status=found.status)

    def _inquiry(self, body: dict[str, Any]) -> FakeResponse:
        found = self._find(body)
        if isinstance(found, FakeResponse):
            return found
        with self._lock:
            return _result(
                SUCCESS,
                "success",
                **found.fields(),
                createdAt=found.created_at.isoformat(),
                wage=0,
                trackId=found.track_id,
            )


def main(argv: list[str] | None = None) -> None:
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--merchant", action="append", dest="merchants", help="a known merchant (repeatable)")
        parser.add_argument("--max-amount", type=int, default=DEFAULT_MAX_AMOUNT, help="largest amount in Rials")

    def build(args: argparse.Namespace) -> FakeZibal:
        merchants = args.merchants or (SANDBOX_MERCHANT,)
        return FakeZibal(port=args.port, delay_seconds=args.delay, merchants=merchants, max_amount=args.max_amount)

    run_cli("A local fake of the Zibal payment gateway (amounts in Rials).", 8200, build, add_arguments, argv)


if __name__ == "__main__":
    main()
