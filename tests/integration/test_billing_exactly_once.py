"""Invariants 2 and 3, under faults: invoiced tokens == metered events; nothing billed, requested or sent twice."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from typing import Any

import pytest

from functions.billing import handler as billing
from local.fake_zibal import FakeZibal
from local.lambda_runtime import LocalLambdaContext
from shared.billing import invoice_id_for
from shared.errors import InvalidInput
from shared.models import InvoiceStatus
from tests.support.harness import CONCURRENT_WRITERS, Harness
from tests.support.usage import DAY, MORNING, bill, deliver_until_done, emails_to, event, metered, requests


def test_the_billing_function_invoked_three_times_makes_one_invoice_request_and_email(
    any_harness: Harness, zibal: FakeZibal
) -> None:
    tenant_id, _ = any_harness.new_tenant(email="three@acme.test")
    tokens = metered(tenant_id, 3)
    runs = [bill() for _ in range(3)]
    assert [r["invoices_created"] for r in runs] == [1, 0, 0]
    invoice = any_harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None and invoice.total_tokens == tokens and invoice.amount_tomans == tokens * 20 // 1000
    assert len(requests(zibal)) == 1 and len(emails_to("three@acme.test")) == 1


@CONCURRENT_WRITERS
def test_concurrent_invocations_for_one_day_make_one_of_everything(any_harness: Harness, zibal: FakeZibal) -> None:
    tenant_id, _ = any_harness.new_tenant(email="burst@acme.test")
    metered(tenant_id, 2)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(bill())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["invoices_created"] for r in results) == 1
    assert all(r["status"] == "succeeded" for r in results), results
    bill()  # a straggler that finds everything done
    assert len(requests(zibal)) == 1 and len(emails_to("burst@acme.test")) == 1


def test_a_refused_payment_request_leaves_the_invoice_unpaid_with_its_reason_and_no_link(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a merchant Zibal does not know (result 102)
    tenant_id, _ = harness.new_tenant(email="refused@acme.test")
    metered(tenant_id, 2)
    monkeypatch.setattr(harness.container.zibal, "_merchant", "not-a-merchant")

    bill()
    bill()

    invoice = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None and invoice.status == InvoiceStatus.PAYMENT_FAILED
    assert "102" in (invoice.payment_error or "") and invoice.payment_url is None
    [email] = emails_to("refused@acme.test")
    assert "No payment link could be created" in email.body and "/start/" not in email.body


def test_a_gateway_outage_fails_the_run_and_the_rerun_requests_once(harness: Harness, zibal: FakeZibal) -> None:
    tenant_id, _ = harness.new_tenant(email="outage@acme.test")
    metered(tenant_id, 2)
    zibal.fail_next(1, status=502)

    first = bill()
    assert first["status"] == "failed" and tenant_id in first["errors"][0]
    assert emails_to("outage@acme.test") == []  # no email without its link

    second = bill()
    assert second["status"] == "succeeded" and second["invoices_existing"] == 1
    invoice = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None and invoice.payment_track_id is not None
    assert len(requests(zibal)) == 2  # the failed call, then the one that created the link
    assert len(emails_to("outage@acme.test")) == 1


def test_a_run_that_dies_after_asking_zibal_never_sends_two_links(
    harness: Harness, zibal: FakeZibal, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a run that dies between Zibal's answer and storing the trackId
    tenant_id, _ = harness.new_tenant(email="crash@acme.test")
    metered(tenant_id, 2)
    repository = harness.container.billing
    real = repository.record_payment_link
    monkeypatch.setattr(repository, "record_payment_link", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("died")))
    assert bill()["status"] == "failed"

    # When it is re-run at once, the lease keeps the step from running twice; after the lease, it is taken over
    monkeypatch.setattr(repository, "record_payment_link", real)
    bill()
    assert len(requests(zibal)) == 1 and emails_to("crash@acme.test") == []
    clock.advance(minutes=11)
    bill()
    bill()

    # Then one link is stored and emailed, whatever Zibal created on the way
    invoice = repository.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None and invoice.payment_url is not None
    [email] = emails_to("crash@acme.test")
    assert invoice.payment_url in email.body


def test_late_usage_lands_on_the_next_invoice_as_its_own_line(harness: Harness, clock: Any) -> None:
    # Given a billed day
    tenant_id, _ = harness.new_tenant()
    on_time = metered(tenant_id, 2)
    bill(DAY)

    # When an event of that day arrives the next day
    clock.advance(days=1)
    late = metered(tenant_id, 1, start=100)

    # Then the billed invoice is untouched, and the next day's invoice carries it as a late line
    first = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert first is not None and first.total_tokens == on_time
    report = harness.container.reconciler.reconcile(DAY)
    [tenant] = report.tenants
    assert report.ok and tenant.carried_tokens == late and tenant.metered_tokens == on_time + late

    bill(DAY + timedelta(days=1))
    second = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY + timedelta(days=1)))
    assert second is not None
    [line] = second.lines
    assert (line.kind.value, line.usage_day, line.tokens) == ("late", DAY, late)
    [tenant] = harness.container.reconciler.reconcile(DAY).tenants
    assert tenant.status == "ok" and tenant.invoiced_tokens == on_time + late and tenant.carried_tokens == 0


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_random_stream_with_duplicates_and_late_events_is_invoiced_exactly(
    any_harness: Harness, clock: Any, seed: int
) -> None:
    """Invoiced tokens == the sum of unique events, for every tenant, with billing interleaved."""
    chaos = random.Random(seed)
    tenants = [any_harness.new_tenant(f"T{n}", f"t{n}@x.test")[0] for n in range(3)]
    unique: dict[str, int] = {}
    stream = []
    for n in range(120):
        tenant_id = chaos.choice(tenants)
        happened = MORNING + timedelta(days=chaos.randrange(3), minutes=chaos.randrange(600))
        e = event(tenant_id, n, tokens=chaos.randrange(1, 3000), at=happened, model=chaos.choice(["m1", "m2"]))
        unique[e.event_id] = e.total_tokens
        stream += [e] * chaos.choice([1, 1, 1, 2, 3])  # duplicates
    chaos.shuffle(stream)

    # Days are billed while the stream still flows, so some events arrive after their day is closed
    for part, day_offset in zip(range(0, len(stream), 60), range(10), strict=False):
        deliver_until_done([e.model_dump_json() for e in stream[part : part + 60]])
        clock.advance(days=1)
        bill(DAY + timedelta(days=day_offset))
    for day_offset in range(4):  # and every day once more at the end: re-runs change nothing
        bill(DAY + timedelta(days=day_offset))
    bill(DAY + timedelta(days=10))  # the late usage of the last runs

    invoiced = {t: sum(i.total_tokens for i in any_harness.container.billing.list_invoices(t)) for t in tenants}
    expected = {t: sum(tokens for eid, tokens in unique.items() if t in eid) for t in tenants}
    assert invoiced == expected
    for day_offset in range(3):
        report = any_harness.container.reconciler.reconcile(DAY + timedelta(days=day_offset))
        assert report.ok, report


def test_an_unknown_event_source_closes_no_day(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    metered(tenant_id, 1)
    with pytest.raises(InvalidInput, match="unknown event source"):
        billing.handler({"source": "docuchat.shedule"}, LocalLambdaContext("billing"))
    assert not harness.container.usage.is_closed(tenant_id, DAY)
