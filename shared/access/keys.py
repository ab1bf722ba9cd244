"""API keys: issued once in plain text, stored only as a hash, looked up by their non-secret prefix.

A key reads dc_<tenant id>_<key id>_<secret>. The prefix names the tenant and key, so authenticating a
request is one consistent GetItem, and the tenant is known before anything else is read.

Rotation: issue a new key, move the clients over, then revoke the old one, with a grace period if the move
takes time (DELETE .../keys/{id}?grace_seconds=3600 keeps it working for an hour, then refuses it).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from shared.ids import new_id
from shared.models import ApiKey

SCHEME = "dc"
KEY_PATTERN = re.compile(r"^dc_([a-z][0-9a-f]{8,32})_([a-z][0-9a-f]{8,32})_([A-Za-z0-9_-]{20,100})$")


def hash_key(plaintext: str) -> str:
    # Keys carry 256 random bits, so a fast hash is enough; slow hashes are for guessable passwords.
    return hashlib.sha256(plaintext.encode()).hexdigest()


def issue_key(
    tenant_id: str,
    name: str,
    now: datetime,
    *,
    scopes: tuple[str, ...] | None = None,
    expires_at: datetime | None = None,
    limits: dict[str, int] | None = None,
) -> tuple[str, ApiKey]:
    key_id = new_id("k")
    prefix = f"{SCHEME}_{tenant_id}_{key_id}"
    plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
    record = ApiKey(
        tenant_id=tenant_id,
        key_id=key_id,
        prefix=prefix,
        key_hash=hash_key(plaintext),
        name=name,
        created_at=now,
        scopes=scopes,
        expires_at=expires_at,
        limits=limits,
    )
    return plaintext, record
