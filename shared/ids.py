"""Identifiers and time. Ids are short lowercase hex with a one-letter kind, e.g. d019ad2c5e1f08a3c9b27d4."""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime


def new_id(kind: str) -> str:
    """A new id: the millisecond it was made (12 hex digits), then 40 random bits.

    Ids of one kind sort by when they were made, so a tenant's documents, listed by key, come newest first
    (or oldest) without an index; the random part keeps ids made in the same millisecond apart.
    """
    return f"{kind}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"


def derived_id(kind: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id (retries stay idempotent)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return kind + digest[:24]


def utc_now() -> datetime:
    return datetime.now(UTC)
