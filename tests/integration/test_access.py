"""JWTs of tenants' own identity providers, scopes, keys that expire and rotate, and tenant isolation."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import FrozenClock
from tests.integration.conftest import _container
from tests.support.harness import Harness, Response
from tests.support.identity import FakeIdentityProvider


@pytest.fixture
def idp() -> Iterator[FakeIdentityProvider]:
    with FakeIdentityProvider() as provider:
        yield provider


def trust(harness: Harness, tenant_id: str, idp: FakeIdentityProvider) -> Response:
    settings = {"issuer": idp.issuer, "jwks_url": idp.jwks_url, "audience": idp.audience}
    return harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"jwt": settings})


def as_bearer(harness: Harness, token: str, path: str = "/v1/documents") -> Response:
    return harness.call("GET", path, headers={"authorization": f"Bearer {token}"})


def test_a_token_of_the_tenants_issuer_is_accepted_with_its_scopes(harness: Harness, idp: FakeIdentityProvider) -> None:
    tenant_id, _ = harness.new_tenant()
    assert trust(harness, tenant_id, idp).status == 200
    reader = idp.token(scope="documents:read chat")
    assert as_bearer(harness, reader).status == 200
    refused = as_bearer(harness, reader, "/v1/usage")  # no usage:read
    assert refused.status == 403 and "usage:read" in refused.json["error"]["message"]
    listed = idp.token(scp=["usage:read"])
    assert as_bearer(harness, listed, "/v1/usage").status == 200
    # The JWKS was fetched once and is cached
    assert idp.fetches == 1


def _part(data: dict[str, Any] | bytes) -> str:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unsigned(claims: dict[str, Any]) -> str:
    return f"{_part({'alg': 'none', 'typ': 'JWT'})}.{_part(claims)}."


def _hmac_signed_with(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    """The key-confusion attack: HS256 keyed with the RSA public key (PyJWT refuses to build it)."""
    signing_input = f"{_part({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{_part(claims)}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_part(signature)}"


@pytest.mark.parametrize(
    "forgery",
    [
        "wrong key",
        "alg none",
        "hs256 with the public key",
        "expired",
        "not yet valid",
        "wrong audience",
        "no sub",
        "garbage",
    ],
)
def test_forged_and_expired_tokens_are_401(harness: Harness, idp: FakeIdentityProvider, forgery: str) -> None:
    tenant_id, _ = harness.new_tenant()
    trust(harness, tenant_id, idp)
    claims = {"iss": idp.issuer, "aud": idp.audience, "sub": "mallory", "exp": 9_999_999_999, "scope": "chat"}
    public_pem = (
        idp.keys[idp.current]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = {
        "wrong key": lambda: idp.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "alg none": lambda: _unsigned(claims),
        "hs256 with the public key": lambda: _hmac_signed_with(public_pem, claims, idp.current),
        "expired": lambda: idp.token(exp=1_000_000_000),
        "not yet valid": lambda: idp.token(nbf=9_999_999_000),
        "wrong audience": lambda: idp.token(aud="someone-else"),
        "no sub": lambda: idp.token(sub=None),
        "garbage": lambda: "eyJhbGciOi.not-a-token.at-all",
    }[forgery]()
    reply = as_bearer(harness, token)
    assert reply.status == 401 and reply.json["error"]["code"] == "unauthorized", reply


def test_an_issuer_belongs_to_one_tenant_and_its_tokens_reach_only_that_tenant(
    harness: Harness, idp: FakeIdentityProvider
) -> None:
    a_id, a_key = harness.new_tenant("A")
    b_id, _ = harness.new_tenant("B")
    trust(harness, a_id, idp)
    # B cannot take A's issuer
    assert trust(harness, b_id, idp).status == 409
    # A's token sees A's documents only; another issuer's token is refused
    harness.call("POST", "/v1/documents", {"title": "A doc", "text": "Only for A."}, key=a_key)
    token = idp.token(scope="documents:read")
    assert [d["title"] for d in as_bearer(harness, token).json["documents"]] == ["A doc"]
    with FakeIdentityProvider(issuer="https://evil.example/") as other:
        assert as_bearer(harness, other.token(scope="documents:read")).status == 401


def test_a_rotated_signing_key_is_fetched_when_a_token_names_it(harness: Harness, idp: FakeIdentityProvider) -> None:
    tenant_id, _ = harness.new_tenant()
    trust(harness, tenant_id, idp)
    assert as_bearer(harness, idp.token(scope="documents:read")).status == 200
    idp.rotate()
    harness.container.authenticator._tokens._jwks._by_url[idp.jwks_url].fetched_at -= 60  # past the refetch pause
    assert as_bearer(harness, idp.token(scope="documents:read")).status == 200
    assert idp.fetches == 2


def test_a_jwks_that_is_junk_or_unreachable_is_a_401_not_a_500(harness: Harness, idp: FakeIdentityProvider) -> None:
    tenant_id, _ = harness.new_tenant()
    trust(harness, tenant_id, idp)
    token = idp.token(scope="documents:read")
    idp.junk = True
    assert as_bearer(harness, token).status == 401
    idp.stop()
    assert as_bearer(harness, token).status == 401


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/jwks",
        "ftp://idp.example/jwks",
        "http://user:pw@idp.example/jwks",
        "http://[fd00:ec2::254]/jwks",
        "http://192.168.1.1/keys",
    ],
)
def test_a_jwks_url_that_reaches_inside_is_refused(harness: Harness, url: str) -> None:
    tenant_id, _ = harness.new_tenant()
    settings = {"issuer": "https://idp.example/", "jwks_url": url, "audience": "docuchat"}
    reply = harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"jwt": settings})
    assert reply.status in (400, 422), reply


def test_keys_carry_scopes_expire_and_rotate_with_a_grace_period(harness: Harness, clock: FrozenClock) -> None:
    tenant_id, _ = harness.new_tenant()

    def key(**body: Any) -> str:
        created = harness.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", body)
        assert created.status == 201, created
        return str(created.json["api_key"])

    # A key with fewer scopes may do only those
    reader = key(scopes=["documents:read"])
    assert harness.call("GET", "/v1/documents", key=reader).status == 200
    assert harness.call("POST", "/v1/chat", {"message": "hi there friend"}, key=reader).status == 403

    # A key with an expiry stops by itself
    short = key(expires_at=(clock() + timedelta(hours=1)).isoformat())
    assert harness.call("GET", "/v1/documents", key=short).status == 200
    clock.advance(hours=2)
    expired = harness.call("GET", "/v1/documents", key=short)
    assert expired.status == 401 and "expired" in expired.json["error"]["message"]

    # Rotation: a new key, then the old one revoked with a grace period; at once without
    old, new = key(), key()
    old_id = old.split("_")[2]
    assert (
        harness.admin("DELETE", f"/v1/admin/tenants/{tenant_id}/keys/{old_id}", query={"grace_seconds": "600"}).status
        == 204
    )
    assert harness.call("GET", "/v1/documents", key=old).status == 200  # still in its grace
    clock.advance(minutes=11)
    assert harness.call("GET", "/v1/documents", key=old).status == 401
    assert harness.call("GET", "/v1/documents", key=new).status == 200
    new_id = new.split("_")[2]
    assert harness.admin("DELETE", f"/v1/admin/tenants/{tenant_id}/keys/{new_id}").status == 204
    assert harness.call("GET", "/v1/documents", key=new).status == 401  # at once, on this warm container

    # Listings show last use, expiry and scopes, never the secret
    keys = harness.admin("GET", f"/v1/admin/tenants/{tenant_id}/keys").json["keys"]
    listed = {k["key_id"]: k for k in keys}
    assert listed[reader.split("_")[2]]["scopes"] == ["documents:read"]
    assert listed[reader.split("_")[2]]["last_used_at"] is not None
    assert "key_hash" not in json.dumps(keys)


def test_another_tenants_ids_are_not_found_on_every_endpoint_that_takes_one(harness: Harness) -> None:
    # Given tenant A's resources
    a_id, a_key = harness.new_tenant("A")
    _, b_key = harness.new_tenant("B")
    document = harness.call("POST", "/v1/documents", {"title": "A", "text": "Secret of A."}, key=a_key).json
    harness.drain("ingestion")
    chat = harness.call("POST", "/v1/chat", {"message": "Secret of A?"}, key=a_key).json
    escalated = harness.call("POST", "/v1/chat", {"message": "I want to talk to a human"}, key=a_key).json
    ticket = harness.call("GET", "/v1/tickets", key=a_key).json["tickets"][0]
    invoice_id = f"inv-{a_id}-20301120"
    assert escalated["route"] == "escalated"

    # When tenant B asks for them by id, then each is simply not found
    for method, path, body in [
        ("GET", f"/v1/documents/{document['document_id']}", None),
        ("DELETE", f"/v1/documents/{document['document_id']}", None),
        ("GET", f"/v1/conversations/{chat['conversation_id']}", None),
        ("DELETE", f"/v1/conversations/{chat['conversation_id']}", None),
        ("POST", "/v1/chat", {"message": "more", "conversation_id": chat["conversation_id"]}),
        ("GET", f"/v1/invoices/{invoice_id}", None),
        ("PATCH", f"/v1/tickets/{ticket['ticket_id']}", {"status": "closed"}),
    ]:
        reply = harness.call(method, path, body, key=b_key)
        assert reply.status == 404, (method, path, reply)
    # And A still has them
    assert harness.call("GET", f"/v1/documents/{document['document_id']}", key=a_key).status == 200


def test_a_tenant_key_cannot_read_the_audit_trail_but_the_admin_sees_every_action(harness: Harness) -> None:
    tenant_id, key = harness.new_tenant()
    harness.admin("PATCH", f"/v1/admin/tenants/{tenant_id}", {"limits": {"requests_per_minute": 30}})
    harness.call("PUT", "/v1/webhook", {"url": "http://127.0.0.1:9/hook", "events": ["invoice.created"]}, key=key)
    assert harness.call("GET", "/v1/admin/audit", key=key).status == 401

    records = harness.admin("GET", "/v1/admin/audit", query={"tenant_id": tenant_id}).json["records"]
    actions = [r["action"] for r in records]
    assert actions == ["webhook.set", "tenant.updated", "key.issued", "tenant.created"]  # newest first
    updated = records[1]
    assert updated["actor"].startswith("admin-key@") and updated["details"]["limits"]["requests_per_minute"] == 30
    assert all("secret" not in json.dumps(r["details"]) for r in records)
    everyone = harness.admin("GET", "/v1/admin/audit", query={"limit": "2"}).json
    assert len(everyone["records"]) == 2 and everyone["next_cursor"]


def test_the_browser_origins_the_stage_allows_get_cors_answers_and_others_do_not(
    function_env: dict[str, str], clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCUCHAT_CORS_ORIGINS", "http://127.0.0.1:8300,https://app.acme.example")
    harness = Harness(_container(clock), function_env)
    _, key = harness.new_tenant()
    preflight = {
        "origin": "https://app.acme.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type",
    }
    allowed = harness.call("OPTIONS", "/v1/chat", headers=preflight)
    assert allowed.status == 200 and allowed.headers["access-control-allow-origin"] == "https://app.acme.example"
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
    refused = harness.call("OPTIONS", "/v1/chat", headers={**preflight, "origin": "https://evil.example"})
    assert "access-control-allow-origin" not in refused.headers

    listed = harness.call("GET", "/v1/documents", key=key, headers={"origin": "http://127.0.0.1:8300"})
    assert listed.status == 200 and listed.headers["access-control-allow-origin"] == "http://127.0.0.1:8300"
    assert "x-ratelimit-remaining" in listed.headers["access-control-expose-headers"].lower()


def test_a_tenant_stops_trusting_its_issuer_and_another_may_take_it(
    harness: Harness, idp: FakeIdentityProvider
) -> None:
    a_id, _ = harness.new_tenant("A")
    b_id, _ = harness.new_tenant("B")
    trust(harness, a_id, idp)
    token = idp.token(scope="documents:read")
    assert as_bearer(harness, token).status == 200

    dropped = harness.admin("PATCH", f"/v1/admin/tenants/{a_id}", {"jwt": None})
    assert dropped.status == 200 and dropped.json["tenant"]["jwt"] is None
    assert as_bearer(harness, token).status == 401
    assert trust(harness, b_id, idp).status == 200


def test_me_says_who_a_key_or_token_is_and_what_it_may_do(harness: Harness, idp: FakeIdentityProvider) -> None:
    tenant_id, key = harness.new_tenant()
    me = harness.call("GET", "/v1/me", key=key)
    assert me.status == 200
    assert me.json["tenant_id"] == tenant_id and me.json["key_id"] == key.split("_")[2]
    assert "chat" in me.json["scopes"] and "documents:write" in me.json["scopes"]
    assert me.json["uploads"]["max_bytes"] == harness.container.settings.max_upload_bytes
    assert "application/pdf" in me.json["uploads"]["content_types"]
    assert me.json["answers"] == "extractive"  # no OPENAI_API_KEY in the tests
    # A token of the tenant's issuer: its subject and its scopes only
    assert trust(harness, tenant_id, idp).status == 200
    token = as_bearer(harness, idp.token(sub="user-7", scope="chat"), "/v1/me")
    assert token.status == 200
    assert (token.json["key_id"], token.json["subject"], token.json["scopes"]) == ("jwt", "jwt:user-7", ["chat"])
    # No key, or a wrong one, is a 401
    assert harness.call("GET", "/v1/me").status == 401
    assert harness.call("GET", "/v1/me", key="dc_t0123456789abcdef_k0123456789_nope").status == 401
