"""Zibal's callback: an invoice is marked paid exactly once, and only when Zibal says so."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from local.fake_zibal import FakeZibal
from shared.billing import invoice_id_for
from shared.models import Invoice, InvoiceStatus
from shared.observability import PAYMENTS_REJECTED
from tests.support.harness import Harness, Response
from tests.support.usage import DAY, bill, emails_to, metered, requests


@pytest.fixture
def invoice(harness: Harness) -> Invoice:
    """An open invoice with a Zibal payment link, emailed to its tenant."""
    tenant_id, _ = harness.new_tenant(email="payer@acme.test")
    metered(tenant_id, 2)
    bill()
    stored = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert stored is not None and stored.payment_track_id and stored.status == InvoiceStatus.OPEN
    return stored


def callback(harness: Harness, query: dict[str, str]) -> Response:
    return harness.call("GET", "/v1/payments/zibal/callback", query=query)


def pay(zibal: FakeZibal, invoice: Invoice) -> dict[str, str]:
    """The payer pays at Zibal; returns the query Zibal's redirect brings back."""
    url = zibal.pay(int(invoice.payment_track_id or 0))
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


def stored(harness: Harness, invoice: Invoice) -> Invoice:
    current = harness.container.billing.get_invoice(invoice.tenant_id, invoice.invoice_id)
    assert current is not None
    return current


def verifies(zibal: FakeZibal) -> int:
    return sum(path == "/v1/verify" for path, _ in zibal.calls)


def test_a_paid_invoice_is_marked_paid_once_and_replays_change_nothing(
    harness: Harness, zibal: FakeZibal, invoice: Invoice
) -> None:
    query = pay(zibal, invoice)
    first = callback(harness, query)
    assert first.status == 200, first
    assert first.json["status"] == "paid"
    paid = stored(harness, invoice)
    assert paid.status == InvoiceStatus.PAID and paid.paid_at is not None and paid.payment_reference

    # A replayed callback answers the same and asks Zibal nothing more
    for _ in range(3):
        assert callback(harness, query).json["status"] == "paid"
    assert verifies(zibal) == 1
    assert stored(harness, invoice).paid_at == paid.paid_at


def test_a_replayed_verify_after_it_was_verified_asks_inquiry_and_pays_once(
    harness: Harness, zibal: FakeZibal, invoice: Invoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given Zibal already verified this payment (our first verify's answer was lost)
    query = pay(zibal, invoice)
    assert harness.container.zibal.verify(query["trackId"])["result"] == 100

    # When the callback comes, verify says "already verified" (201), and inquiry confirms it
    response = callback(harness, query)
    assert response.status == 200 and response.json["status"] == "paid"
    assert any(path == "/v1/inquiry" for path, _ in zibal.calls)


def test_a_verify_timeout_after_payment_is_retried_and_pays_once_with_no_second_link(
    harness: Harness, zibal: FakeZibal, invoice: Invoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a verify that Zibal carries out but whose answer comes too late
    monkeypatch.setattr(harness.container.zibal, "_timeout", 0.3)
    query = pay(zibal, invoice)
    zibal.hang_next(1, seconds=1.0)

    # When the callback arrives, it fails as a dependency failure (not the caller's), and changes nothing
    first = callback(harness, query)
    assert first.status == 502 and first.json["error"]["code"] == "upstream_failed"
    assert stored(harness, invoice).status == InvoiceStatus.OPEN

    # And when it comes again, it is paid, once; billing re-runs send no second link
    second = callback(harness, query)
    assert second.status == 200 and second.json["status"] == "paid"
    bill()
    assert len(requests(zibal)) == 1 and len(emails_to("payer@acme.test")) == 1


def test_a_callback_for_an_unpaid_transaction_is_refused(harness: Harness, invoice: Invoice) -> None:
    query = {"trackId": str(invoice.payment_track_id), "orderId": invoice.invoice_id, "success": "1", "status": "2"}
    response = callback(harness, query)  # forged "success": Zibal's verify says not paid
    assert response.status == 400 and "not completed" in response.json["error"]["message"]
    assert stored(harness, invoice).status == InvoiceStatus.OPEN


def test_a_callback_with_another_invoices_track_id_is_refused(
    harness: Harness, zibal: FakeZibal, invoice: Invoice
) -> None:
    other = zibal.pay(
        int(harness.container.zibal.request_payment(1000, "elsewhere", "x", "https://x.test/cb").track_id)
    )
    track_id = parse_qs(urlparse(other).query)["trackId"][0]
    response = callback(harness, {"trackId": track_id, "orderId": invoice.invoice_id, "success": "1"})
    assert response.status == 400 and "does not belong" in response.json["error"]["message"]
    assert stored(harness, invoice).status == InvoiceStatus.OPEN


def test_a_payment_of_the_wrong_amount_is_refused(harness: Harness, zibal: FakeZibal, invoice: Invoice) -> None:
    query = pay(zibal, invoice)
    zibal.transactions[int(query["trackId"])].amount = invoice.amount_rials - 10
    response = callback(harness, query)
    assert response.status == 400 and "Rials" in response.json["error"]["message"]
    assert stored(harness, invoice).status == InvoiceStatus.OPEN


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ({}, 422),
        ({"trackId": "abc", "orderId": "inv-x-20301120"}, 422),
        ({"trackId": "1" * 30, "orderId": "inv-x-20301120"}, 422),
        ({"trackId": "123"}, 422),
        ({"trackId": "123", "orderId": "x" * 200}, 422),
        ({"trackId": "123", "orderId": "garbage"}, 404),
        ({"trackId": "123", "orderId": "inv-t0123456789abcdef-20301120"}, 404),
    ],
)
def test_missing_or_garbage_parameters_get_a_4xx_and_change_nothing(
    harness: Harness, invoice: Invoice, query: dict[str, Any], status: int
) -> None:
    response = callback(harness, query)
    assert response.status == status, response
    assert "error" in response.json
    assert stored(harness, invoice).status == InvoiceStatus.OPEN


def test_a_claimed_success_that_zibal_does_not_confirm_is_counted_as_rejected(
    harness: Harness, invoice: Invoice, monkeypatch: pytest.MonkeyPatch
) -> None:
    rejected: list[int] = []
    monkeypatch.setattr(
        "shared.observability.metrics.add_metric",
        lambda **kw: rejected.append(kw["value"]) if kw["name"] == PAYMENTS_REJECTED else None,
    )
    forged = {"trackId": str(invoice.payment_track_id), "orderId": invoice.invoice_id, "success": "1"}
    assert callback(harness, forged).status == 400
    assert rejected == [1]

    # A payer who cancelled is answered without asking Zibal, and is not counted as a forgery
    cancelled = {**forged, "success": "0", "status": "3"}
    assert callback(harness, cancelled).status == 400
    assert rejected == [1]
