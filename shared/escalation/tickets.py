"""A ticket for each escalation: kept for the tenant's staff, published to the stage's SNS topic (whoever runs
the support desk subscribes), and sent to the tenant's webhook as `escalation.created`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from shared.data.dynamo import Page
from shared.data.tickets import TicketRepository
from shared.ids import new_id
from shared.models import Ticket, TicketStatus
from shared.observability import ESCALATIONS, count, logger
from shared.webhooks.service import WebhookEmitter

ESCALATION_ANSWER = (
    "I've passed your question to a person on the team: someone will follow up with you soon. "
    "Your ticket number is {ticket_id}."
)


class TopicPublisher(Protocol):
    def publish(self, subject: str, message: dict[str, object]) -> None: ...


class TicketService:
    def __init__(
        self,
        tickets: TicketRepository,
        topic: TopicPublisher,
        webhooks: WebhookEmitter,
        clock: Callable[[], datetime],
    ) -> None:
        self._tickets = tickets
        self._topic = topic
        self._webhooks = webhooks
        self._clock = clock

    def open(self, tenant_id: str, conversation_id: str, question: str, reason: str) -> Ticket:
        now = self._clock()
        ticket = Ticket(
            tenant_id=tenant_id,
            ticket_id=new_id("x"),
            conversation_id=conversation_id,
            question=question[:2000],
            reason=reason,
            created_at=now,
            updated_at=now,
        )
        self._tickets.put(ticket)
        count(ESCALATIONS, 1)
        payload = ticket.model_dump(mode="json")
        try:
            self._topic.publish(f"DocuChat escalation {ticket.ticket_id}", payload)
        except Exception:  # the ticket is kept either way; the desk also sees it in GET /v1/tickets
            logger.exception("publishing an escalation failed", extra={"tenant_id": tenant_id})
        self._webhooks.emit(tenant_id, "escalation.created", payload)
        return ticket

    def page(self, tenant_id: str, limit: int, cursor: str | None) -> Page[Ticket]:
        return self._tickets.page(tenant_id, limit, cursor)

    def set_status(self, tenant_id: str, ticket_id: str, status: TicketStatus) -> Ticket:
        return self._tickets.set_status(tenant_id, ticket_id, status, self._clock())
