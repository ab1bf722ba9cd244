"""The usage events of one answer, whichever door it came through: each id derived from the request's event id,
so a retried request is metered once."""

from __future__ import annotations

from datetime import datetime

from shared.chat.followups import Rewrite
from shared.ids import derived_id
from shared.models import Principal, UsageEvent, UsageKind
from shared.retrieval import Retrieval


def answer_events(
    principal: Principal,
    event_id: str,
    occurred_at: datetime,
    retrieval: Retrieval,
    rewrite: Rewrite,
    model: str,
    input_tokens: int,
    output_tokens: int,
    cached: bool = False,
) -> list[UsageEvent]:
    """The question's embedding, the follow-up's rewriting (when a model did it) and the answer itself."""

    def event(suffix: str, kind: UsageKind, model: str, tokens_in: int, tokens_out: int, cached: bool) -> UsageEvent:
        return UsageEvent(
            event_id=derived_id("e", suffix, event_id) if suffix else event_id,
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            kind=kind,
            model=model,
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            cached=cached,
            occurred_at=occurred_at,
        )

    events = []
    if retrieval.embedding_tokens:
        events.append(
            event(
                "query-embedding", UsageKind.EMBEDDING, retrieval.embedding_model, retrieval.embedding_tokens, 0, False
            )
        )
    if rewrite.model:
        events.append(
            event("rewrite", UsageKind.CHAT, rewrite.model, rewrite.input_tokens, rewrite.output_tokens, False)
        )
    if input_tokens or output_tokens:
        events.append(event("", UsageKind.CHAT, model, input_tokens, output_tokens, cached))
    return events
