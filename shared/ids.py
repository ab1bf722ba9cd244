"""Identifiers and time. Ids are short lowercase hex with a one-letter kind, e.g. t3f9a0c12d4e5b6a7."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime


def new_id(kind: str) -> str:
    return kind + secrets.token_hex(8)


def derived_id(kind: str, *parts: str) -> str:
    """A deterministic id: the same parts always give the same id (retries stay idempotent)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).hexdigest()
    return kind + digest[:24]


def utc_now() -> datetime:
    return datetime.now(UTC)
