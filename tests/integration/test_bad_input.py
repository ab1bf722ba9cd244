"""Bad input gets a JSON 4xx in the documented shape, never a 5xx."""

from __future__ import annotations

import pytest

from tests.support.harness import Harness, Response


def assert_error(response: Response, status: int, code: str) -> None:
    assert response.status == status, response
    assert response.json["error"]["code"] == code, response
    assert response.json["error"]["message"]


@pytest.fixture
def key(harness: Harness) -> str:
    return harness.new_tenant()[1]


def test_malformed_json_is_a_400(harness: Harness, key: str) -> None:
    assert_error(harness.call("POST", "/v1/chat", raw_body='{"message": "hi"', key=key), 400, "invalid_json")


def test_missing_and_unknown_fields_are_422(harness: Harness, key: str) -> None:
    assert_error(harness.call("POST", "/v1/chat", {}, key=key), 422, "validation_failed")
    assert_error(
        harness.call("POST", "/v1/chat", {"message": "hi", "colour": "red"}, key=key), 422, "validation_failed"
    )
    assert_error(harness.call("POST", "/v1/documents", {"title": "t"}, key=key), 422, "validation_failed")
    assert_error(
        harness.admin("POST", "/v1/admin/tenants", {"name": "x", "email": "not-an-email"}), 422, "validation_failed"
    )
    assert_error(harness.admin("POST", "/v1/admin/billing/run", {"date": "yesterday"}), 422, "validation_failed")


def test_oversized_fields_and_bodies_are_413(harness: Harness, key: str) -> None:
    limits = harness.container.settings
    long_message = "x" * (limits.max_message_chars + 1)
    # A message over the limit is refused by the schema itself (which states the limit): a 422 naming the field
    assert_error(harness.call("POST", "/v1/chat", {"message": long_message}, key=key), 422, "validation_failed")
    huge = "word " * (limits.max_request_bytes // 5 + 10)
    assert_error(harness.call("POST", "/v1/documents", {"title": "t", "text": huge}, key=key), 413, "payload_too_large")


def test_empty_and_unsupported_documents_are_rejected(harness: Harness, key: str) -> None:
    # Blank text, a type inline text cannot have, a blank message: the schema says so, so each is a 422
    blank = {"title": "t", "text": "   "}
    assert_error(harness.call("POST", "/v1/documents", blank, key=key), 422, "validation_failed")
    body = {"title": "t", "text": "hello", "content_type": "application/pdf"}
    assert_error(harness.call("POST", "/v1/documents", body, key=key), 422, "validation_failed")
    assert_error(harness.call("POST", "/v1/chat", {"message": "   "}, key=key), 422, "validation_failed")


def test_unknown_ids_are_404(harness: Harness, key: str) -> None:
    assert_error(harness.call("GET", "/v1/documents/d0123456789abcdef", key=key), 404, "not_found")
    assert_error(harness.call("GET", "/v1/documents/../../etc", key=key), 404, "not_found")
    assert_error(harness.call("GET", "/v1/invoices/inv-nope", key=key), 404, "not_found")
    assert_error(harness.call("GET", "/v1/conversations/NOT-AN-ID", key=key), 404, "not_found")
    assert_error(
        harness.call("POST", "/v1/chat", {"message": "hi", "conversation_id": "c0123456789abcdef"}, key=key),
        404,
        "not_found",
    )
    assert_error(harness.admin("POST", "/v1/admin/tenants/t0123456789abcdef/keys", {}), 404, "not_found")
    assert_error(harness.admin("DELETE", "/v1/admin/tenants/t0123456789abcdef/keys/k0123456789"), 404, "not_found")
    assert_error(harness.call("GET", "/v1/nowhere", key=key), 404, "not_found")


def test_wrong_missing_and_revoked_keys_are_401(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    assert_error(harness.call("POST", "/v1/chat", {"message": "hi"}), 401, "unauthorized")
    assert_error(harness.call("POST", "/v1/chat", {"message": "hi"}, key="garbage"), 401, "unauthorized")
    forged = key[:-4] + ("AAAA" if not key.endswith("AAAA") else "BBBB")
    assert_error(harness.call("POST", "/v1/chat", {"message": "hi"}, key=forged), 401, "unauthorized")

    key_id = key.split("_")[2]
    assert harness.admin("DELETE", f"/v1/admin/tenants/{tenant_id}/keys/{key_id}").status == 204
    assert_error(harness.call("GET", "/v1/documents", key=key), 401, "unauthorized")


def test_the_admin_api_needs_the_admin_key(harness: Harness, key: str) -> None:
    assert_error(harness.call("GET", "/v1/admin/tenants", key=key), 401, "unauthorized")
    assert_error(harness.call("GET", "/v1/admin/tenants"), 401, "unauthorized")


def test_a_suspended_tenant_is_403(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    assert harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"status": "suspended"}).status == 200
    assert_error(harness.call("GET", "/v1/documents", key=key), 403, "forbidden")


def test_bad_usage_queries_are_400(harness: Harness, key: str) -> None:
    assert_error(
        harness.call("GET", "/v1/usage", key=key, query={"start": "2026-02-01", "end": "2026-01-01"}),
        400,
        "invalid_request",
    )
    assert_error(
        harness.call("GET", "/v1/usage", key=key, query={"start": "2020-01-01", "end": "2026-01-01"}),
        400,
        "invalid_request",
    )
    assert_error(harness.call("GET", "/v1/usage", key=key, query={"start": "soon"}), 422, "validation_failed")


def test_a_key_is_shown_once_and_stored_only_as_a_hash(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    listed = harness.admin("GET", f"/v1/admin/tenants/{tenant_id}/keys")
    assert listed.status == 200
    assert key not in listed.text and "key_hash" not in listed.text
    assert listed.json["keys"][0]["prefix"] == "_".join(key.split("_")[:3])
    stored = harness.container.aws.dynamodb.scan(TableName=harness.container.settings.tenants_table)["Items"]
    assert all(key not in str(item) for item in stored)


def test_an_unreachable_database_is_a_503_with_retry_after_and_readiness_says_so(
    function_env: dict[str, str], clock: object
) -> None:
    # Given the functions' container pointed at a DynamoDB that does not answer (nothing listens on port 9)
    from shared.container import Container, load_settings
    from tests.support.harness import Harness

    harness = Harness(Container(load_settings(dynamodb_endpoint_url="http://127.0.0.1:9")), function_env)

    # When a tenant calls, and when readiness is asked
    reply = harness.call("GET", "/v1/documents", key="dc_t0123456789_k0123456789_" + "x" * 43)
    ready = harness.call("GET", "/health/ready")

    # Then the call is a 503 telling when to retry, not a 500; readiness names the failed dependency
    assert_error(reply, 503, "service_unavailable")
    assert reply.headers["retry-after"] == "1"
    assert ready.status == 503
    assert ready.json["checks"]["dynamodb"].startswith("failed") and ready.json["checks"]["sqs"] == "ok"
