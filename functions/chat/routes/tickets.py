"""Escalations to a person: the tickets chat opened, for the tenant's staff to work through."""

from __future__ import annotations

from fastapi import APIRouter

from functions.chat.deps import PageParams, Services, TicketHandler, known_id
from functions.chat.openapi import TENANT_ERRORS
from functions.chat.schemas import TicketList, TicketUpdate
from shared.models import Ticket

router = APIRouter(prefix="/v1/tickets", tags=["tickets"], responses=TENANT_ERRORS)


@router.get("", response_model=TicketList)
def list_tickets(caller: TicketHandler, services: Services, page: PageParams) -> TicketList:
    """Newest first."""
    found = services.tickets.page(caller.tenant_id, page.limit, page.cursor)
    return TicketList(tickets=found.items, next_cursor=found.next_cursor)


@router.patch("/{ticket_id}", response_model=Ticket)
def update_ticket(ticket_id: str, body: TicketUpdate, caller: TicketHandler, services: Services) -> Ticket:
    """Move a ticket on: open, in_progress, resolved, closed."""
    return services.tickets.set_status(caller.tenant_id, known_id(ticket_id, "ticket"), body.status)
