"""Reconciliation: invoiced tokens == unique metered events, per tenant and day, and it says so when not."""

from __future__ import annotations

from typing import Any

from functions.billing import handler as billing
from local.lambda_runtime import LocalLambdaContext
from shared.billing import invoice_id_for
from shared.data.dynamo import to_item
from tests.support.harness import Harness
from tests.support.usage import DAY, bill, metered
from tools.reconcile import render


def test_a_billed_day_reconciles_and_an_open_one_is_reported_open(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    tokens = metered(tenant_id, 3, tokens=100)

    before = harness.admin("GET", "/v1/admin/reconciliation", query={"date": DAY.isoformat()})
    assert before.status == 200 and before.json["ok"]
    assert before.json["tenants"][0]["status"] == "open"  # not billed yet: not a mismatch

    bill()
    after = harness.admin("GET", "/v1/admin/reconciliation", query={"date": DAY.isoformat()}).json
    [tenant] = after["tenants"]
    assert after["ok"] and tenant["status"] == "ok"
    assert tenant["metered_events"] == 3 and tenant["metered_tokens"] == tenant["invoiced_tokens"] == tokens
    assert "reconciled" in render(after)


def test_an_invoice_that_lost_tokens_is_a_mismatch(harness: Harness) -> None:
    # Given a billed day whose invoice was tampered with
    tenant_id, _ = harness.new_tenant()
    metered(tenant_id, 3, tokens=100)
    bill()
    container = harness.container
    invoice = container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None
    short = invoice.model_copy(update={"lines": (invoice.lines[0].model_copy(update={"tokens": 1}),)})
    item = {"pk": tenant_id, "sk": f"invoice#{invoice.invoice_id}", **short.model_dump(mode="json")}
    container.aws.dynamodb.put_item(TableName=container.settings.billing_table, Item=to_item(item))

    # When the nightly check runs, then it reports the tenant
    report: dict[str, Any] = billing.handler(
        {"source": "docuchat.reconcile", "date": DAY.isoformat()}, LocalLambdaContext("billing")
    )
    assert report["mismatches"] == 1 and report["tenants"][0]["status"] == "mismatch"
    assert "do NOT reconcile" in render({**report, "ok": False})


def test_a_tenants_own_prices_replace_the_stages(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    patched = harness.admin(
        "PATCH", f"/v1/admin/tenants/{tenant_id}", {"prices": {"default": {"input": 10, "output": 100}}}
    )
    assert patched.status == 200, patched
    metered(tenant_id, 1, tokens=4000)  # 4,000 input and 2,000 output tokens
    bill()
    invoice = harness.container.billing.get_invoice(tenant_id, invoice_id_for(tenant_id, DAY))
    assert invoice is not None
    [line] = invoice.lines
    assert (line.input_price, line.output_price, line.amount_tomans) == (10, 100, 4 * 10 + 2 * 100)


def test_bad_prices_are_refused(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    response = harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"prices": {"m": {"input": -1, "output": 1}}})
    assert response.status == 422
