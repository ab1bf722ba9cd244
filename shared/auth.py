"""API keys: issued once in plain text, stored only as a hash, looked up by their non-secret prefix.

A key reads dc_<tenant id>_<key id>_<secret>. The prefix names the tenant and key, so authenticating a
request is one consistent GetItem, and the tenant is known before anything else is read.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import datetime

from shared.data.tenants import TenantRepository
from shared.errors import Forbidden, Unauthorized
from shared.ids import new_id
from shared.models import ApiKey, Principal, TenantStatus

SCHEME = "dc"
_KEY_PATTERN = re.compile(r"^dc_([a-z][0-9a-f]{8,32})_([a-z][0-9a-f]{8,32})_([A-Za-z0-9_-]{20,100})$")


def hash_key(plaintext: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough; slow hashes are for guessable passwords.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_key(tenant_id: str, name: str, now: datetime) -> tuple[str, ApiKey]:
    key_id = new_id("k")
    prefix = f"{SCHEME}_{tenant_id}_{key_id}"
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        tenant_id=tenant_id, key_id=key_id, prefix=prefix, key_hash=hash_key(plaintext), name=name, created_at=now
    )
    return plaintext, record


class Authenticator:
    def __init__(self, tenants: TenantRepository, admin_key: str | None) -> None:
        self._tenants = tenants
        self._admin_key = admin_key

    def tenant(self, presented: str | None) -> Principal:
        if not presented:
            raise Unauthorized("missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'")
        match = _KEY_PATTERN.match(presented)
        if not match:
            raise Unauthorized("invalid API key")
        tenant_id, key_id, _secret = match.groups()
        record = self._tenants.get_key(tenant_id, key_id)
        if record is None or not hmac.compare_digest(record.key_hash, hash_key(presented)):
            raise Unauthorized("invalid API key")
        if not record.active:
            raise Unauthorized("this API key was revoked")
        tenant = self._tenants.get(tenant_id)
        if tenant is None or tenant.status != TenantStatus.ACTIVE:
            raise Forbidden("this tenant is suspended")
        return Principal(tenant_id=tenant_id, key_id=key_id)

    def admin(self, presented: str | None) -> None:
        if not self._admin_key:
            raise Forbidden("the admin API is disabled: no admin key is configured")
        if not presented or not hmac.compare_digest(presented.encode(), self._admin_key.encode()):
            raise Unauthorized("invalid admin key")
