"""The response cache (LLM_CACHE_TTL seconds; 0 turns it off): the same question, answered again for free.

A hit needs everything that shaped the answer to be the same, so a changed document or another turn of the
conversation never gets a stale answer:

- the tenant, and the models that may answer (the chain);
- the question, normalised (case, spacing, trailing punctuation);
- each retrieved passage's document, chunk and exact text (a re-uploaded document has new text, so new keys);
- the conversation so far.

A hit is metered with `cached: true` under the tokens the original answer took, and billed on a line of its own
at the price table's "cached" entry (0 unless set). Only answers a model wrote are kept: "I don't know" and
degraded answers cost nothing to make again.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from shared.models import Message, Passage
from shared.observability import RESPONSE_CACHE_HITS, count, logger

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    model: str
    input_tokens: int
    output_tokens: int


@dataclass(frozen=True)
class CacheEntry:
    tenant_id: str
    key: str
    fields: dict[str, object]
    expires_at: datetime


class CacheStore(Protocol):
    def get(self, tenant_id: str, key: str, now: datetime) -> dict[str, object] | None: ...


def normalised_question(question: str) -> str:
    return _SPACES.sub(" ", question).strip().rstrip("?!. ").casefold()


def cache_key(
    tenant_id: str, chain: Sequence[str], question: str, passages: Sequence[Passage], history: Sequence[Message]
) -> str:
    material = {
        "tenant": tenant_id,
        "models": list(chain),
        "question": normalised_question(question),
        "passages": [
            [p.chunk.document_id, p.chunk.index, hashlib.sha256(p.chunk.text.encode()).hexdigest()] for p in passages
        ],
        "history": [[m.role, m.content] for m in history],
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    def __init__(self, store: CacheStore, ttl_seconds: int, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock

    @property
    def enabled(self) -> bool:
        return self._ttl.total_seconds() > 0

    def get(self, tenant_id: str, key: str) -> CachedAnswer | None:
        if not self.enabled:
            return None
        try:
            entry = self._store.get(tenant_id, key, self._clock())
        except Exception as error:  # a cache that cannot be read is a miss, never a failed chat
            logger.warning("response cache read failed", extra={"error": str(error)})
            return None
        if entry is None:
            return None
        count(RESPONSE_CACHE_HITS, 1)
        return CachedAnswer(
            text=str(entry["text"]),
            model=str(entry["model"]),
            input_tokens=int(str(entry["input_tokens"])),
            output_tokens=int(str(entry["output_tokens"])),
        )

    def entry(self, tenant_id: str, key: str, answer: CachedAnswer) -> CacheEntry | None:
        """What to keep of a new answer (None with the cache off): written with the conversation's turn."""
        if not self.enabled:
            return None
        fields: dict[str, object] = {
            "text": answer.text,
            "model": answer.model,
            "input_tokens": answer.input_tokens,
            "output_tokens": answer.output_tokens,
        }
        return CacheEntry(tenant_id, key, fields, self._clock() + self._ttl)
