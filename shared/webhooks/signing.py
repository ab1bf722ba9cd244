"""How deliveries are signed, and how a receiver checks them (docs/webhooks.md says the same for receivers).

    DocuChat-Signature: t=1733068800,v1=5257a869...

`v1` is the hex HMAC-SHA256, keyed with the webhook's signing secret, of the timestamp, a dot, and the raw body
exactly as received. A receiver recomputes it, compares in constant time, and rejects a timestamp more than five
minutes from its own clock: a replayed delivery carries an old one. The body's `id` lets it drop a duplicate.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "DocuChat-Signature"
TOLERANCE_SECONDS = 300
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, now: int, tolerance: int = TOLERANCE_SECONDS) -> bool:
    """What a receiver does: the signature matches, and the timestamp is recent."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))
