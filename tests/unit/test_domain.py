"""Unit tests of the domain logic: no network, no AWS."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from shared.access.keys import hash_key, issue_key
from shared.billing import PriceTable, invoice_email, invoice_id_for, parse_invoice_id, parse_prices, previous_day
from shared.chat.responders import EXTRACTIVE_MODEL, NO_KEY_NOTE, ExtractiveResponder
from shared.errors import InvalidInput
from shared.metering import billing_day, parse_event
from shared.models import Chunk, Invoice, InvoiceLine, LineKind, ModelPrice, Passage, Tenant, UsageCounter

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def chunk(index: int, text: str, document_id: str = "d1234567890") -> Chunk:
    return Chunk(tenant_id="t1234567890", document_id=document_id, index=index, title="Doc", text=text)


class TestExtractiveResponder:
    def test_it_quotes_the_best_sentence_and_says_it_is_extractive(self) -> None:
        passages = [Passage(chunk=chunk(0, "We ship fast. A refund takes 14 days. Call us."), score=1.0)]
        answer = ExtractiveResponder().answer("refund?", passages, [])
        assert "A refund takes 14 days. [1]" in answer.text
        assert answer.model == EXTRACTIVE_MODEL and NO_KEY_NOTE in answer.text
        assert answer.input_tokens > 0 and answer.output_tokens > 0

    def test_it_says_it_does_not_know_without_passages(self) -> None:
        assert ExtractiveResponder().answer("anything?", [], []).text.startswith("I don't know")


class TestKeys:
    def test_a_key_names_its_tenant_and_is_stored_as_a_hash(self) -> None:
        plaintext, record = issue_key("t0123456789abcdef", "ci", NOW)
        assert plaintext.startswith(record.prefix + "_")
        assert record.prefix == f"dc_t0123456789abcdef_{record.key_id}"
        assert record.key_hash == hash_key(plaintext) and plaintext not in record.model_dump_json()

    def test_keys_are_unique(self) -> None:
        assert issue_key("t0123456789", "", NOW)[0] != issue_key("t0123456789", "", NOW)[0]


class TestBilling:
    def test_the_default_price_is_20_tomans_per_1000_tokens_rounded_up(self) -> None:
        prices = PriceTable(parse_prices({"default": 20}))
        counter = UsageCounter(tenant_id="t1", day=date(2026, 1, 1), model="m", input_tokens=1000, output_tokens=1)
        line = prices.line(LineKind.USAGE, counter.day, counter)
        assert (line.tokens, line.input_price, line.output_price, line.amount_tomans) == (1001, 20, 20, 21)

    def test_input_and_output_are_priced_apart_and_a_tenant_can_have_its_own_prices(self) -> None:
        stage = PriceTable(parse_prices({"default": 20, "gpt-4o": {"input": 10, "output": 40}}))
        counter = UsageCounter(
            tenant_id="t1", day=date(2026, 1, 1), model="gpt-4o", input_tokens=2000, output_tokens=1000
        )
        assert stage.line(LineKind.USAGE, counter.day, counter).amount_tomans == 2 * 10 + 1 * 40
        tenant = Tenant(
            tenant_id="t1", name="A", email="a@a.test", created_at=NOW, prices={"gpt-4o": ModelPrice(input=5, output=5)}
        )
        assert stage.for_tenant(tenant).line(LineKind.USAGE, counter.day, counter).amount_tomans == 15
        assert stage.for_tenant(tenant).price("other") == ModelPrice(input=20, output=20)

    def test_a_price_table_needs_a_default(self) -> None:
        with pytest.raises(ValueError):
            parse_prices({"gpt-4o": 10})

    def test_the_billing_day_is_the_day_in_tehran(self) -> None:
        late_utc = datetime(2026, 11, 20, 21, 0, tzinfo=UTC)  # 00:30 on the 21st in Tehran
        assert billing_day(late_utc, "Asia/Tehran") == date(2026, 11, 21)
        assert previous_day(late_utc, "Asia/Tehran") == date(2026, 11, 20)

    def test_invoice_ids_are_deterministic_and_name_their_tenant_and_day(self) -> None:
        invoice_id = invoice_id_for("t1234567890", date(2026, 11, 20))
        assert invoice_id == "inv-t1234567890-20261120"
        assert parse_invoice_id(invoice_id) == ("t1234567890", date(2026, 11, 20))
        for garbage in ("inv-x", "inv-t1-2026112", "inv-t1-20261340", "x-t1-20261120", "inv-a-b-20261120"):
            assert parse_invoice_id(garbage) is None

    def test_the_email_shows_tomans_late_usage_and_the_link(self) -> None:
        line = InvoiceLine(
            usage_day=date(2026, 11, 20),
            model="m",
            input_tokens=1000,
            output_tokens=1000,
            tokens=2000,
            events=2,
            input_price=20,
            output_price=20,
            amount_tomans=40,
        )
        late = line.model_copy(update={"kind": LineKind.LATE, "usage_day": date(2026, 11, 18)})
        invoice = Invoice(
            invoice_id="inv-x",
            tenant_id="t1",
            period=date(2026, 11, 20),
            lines=(line, late),
            total_tokens=4000,
            amount_tomans=80,
            payment_url="https://pay/start/1",
            created_at=NOW,
        )
        subject, body = invoice_email(invoice, "Acme")
        assert "80 Tomans" in subject and "https://pay/start/1" in body and "4,000 tokens" in body
        assert "late usage of 2026-11-18" in body
        assert invoice.amount_rials == 800


class TestUsageEvents:
    def test_a_valid_event_parses(self) -> None:
        event = parse_event(
            '{"event_id": "e12345678", "tenant_id": "t1234567890", "kind": "chat", "model": "m",'
            ' "input_tokens": 3, "output_tokens": 4, "occurred_at": "2026-11-20T09:30:00Z"}'
        )
        assert event.total_tokens == 7

    @pytest.mark.parametrize(
        "body",
        [
            "not json",
            '{"event_id": "e12345678"}',
            '{"event_id": "e12345678", "tenant_id": "t1234567890", "kind": "chat", "model": "m",'
            ' "input_tokens": -3, "output_tokens": 4, "occurred_at": "2026-11-20T09:30:00Z"}',
            '{"event_id": "e12345678", "tenant_id": "t1234567890", "kind": "chat", "model": "m",'
            ' "input_tokens": 99999999999, "output_tokens": 4, "occurred_at": "2026-11-20T09:30:00Z"}',
        ],
    )
    def test_malformed_negative_or_absurd_events_are_rejected(self, body: str) -> None:
        with pytest.raises(InvalidInput):
            parse_event(body)
