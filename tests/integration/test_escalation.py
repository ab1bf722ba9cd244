"""Escalation to a person: which questions go to one, the ticket they open, and who hears of it."""

from __future__ import annotations

from typing import Any

import pytest

from shared.escalation.router import DONT_KNOW_PREFIX
from tests.support.aws import published
from tests.support.harness import Harness

POLICY = "Refunds are accepted within 30 days of purchase. Support is open from 9 to 17 on working days."


def chat(harness: Harness, key: str, message: str, conversation_id: str | None = None) -> dict[str, Any]:
    body = {"message": message} | ({"conversation_id": conversation_id} if conversation_id else {})
    reply = harness.call("POST", "/v1/chat", body, key=key)
    assert reply.status == 200, reply
    return dict(reply.json)


def tenant_with_policy(harness: Harness) -> tuple[str, str]:
    tenant_id, key = harness.new_tenant()
    harness.call("POST", "/v1/documents", {"title": "Policy", "text": POLICY}, key=key)
    harness.drain("ingestion")
    return tenant_id, key


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("I want to speak to a human, now.", "asked for a person"),
        ("Can you connect me with a live agent about my refund?", "asked for a person"),
        ("This is useless, my refund never arrived!", "the tone is angry"),
        ("WHERE IS MY REFUND I PAID WEEKS AGO!!!", "the tone is angry"),
        ("می‌خواهم با یک اپراتور صحبت کنم", "asked for a person"),
    ],
)
def test_a_question_for_a_person_opens_a_ticket_and_says_so(harness: Harness, message: str, reason: str) -> None:
    tenant_id, key = tenant_with_policy(harness)
    reply = chat(harness, key, message)
    assert reply["route"] == "escalated" and reply["citations"] == []
    assert reply["usage"]["total_tokens"] == 0  # no model wrote it; nothing is billed
    [ticket] = harness.call("GET", "/v1/tickets", key=key).json["tickets"]
    assert ticket["ticket_id"] in reply["answer"]
    assert ticket["status"] == "open" and ticket["reason"] == reason and ticket["question"] == message
    assert ticket["conversation_id"] == reply["conversation_id"]

    # The support desk's topic hears of it, and so does the tenant's webhook queue
    [notice] = published(harness.env["DOCUCHAT_ESCALATIONS_TOPIC_ARN"])
    assert notice["message"]["ticket_id"] == ticket["ticket_id"] and notice["message"]["tenant_id"] == tenant_id
    assert ticket["ticket_id"] in notice["subject"]


@pytest.mark.parametrize(
    "message",
    [
        "What is the refund policy?",
        "How do I reach a person in the refunds team by email?",  # names a person, asks for no one
        "Is the agent model angry-proof?",
        "hi",
    ],
)
def test_ordinary_questions_are_not_escalated(harness: Harness, message: str) -> None:
    _, key = tenant_with_policy(harness)
    assert chat(harness, key, message)["route"] != "escalated"
    assert harness.call("GET", "/v1/tickets", key=key).json["tickets"] == []


def test_small_talk_is_answered_without_a_search(harness: Harness) -> None:
    _, key = tenant_with_policy(harness)
    reply = chat(harness, key, "Thanks!")
    assert reply["route"] == "direct" and reply["citations"] == []
    assert reply["usage"]["embedding_tokens"] == 0


def test_a_conversation_that_keeps_getting_i_dont_know_goes_to_a_person(harness: Harness) -> None:
    _, key = tenant_with_policy(harness)
    first = chat(harness, key, "What colour is the CEO's car?")
    assert first["answer"].startswith(DONT_KNOW_PREFIX)
    conversation = first["conversation_id"]
    second = chat(harness, key, "Which parking spot does the CEO use?", conversation)
    assert second["answer"].startswith(DONT_KNOW_PREFIX)
    third = chat(harness, key, "And the CEO's favourite lunch spot?", conversation)
    assert third["route"] == "escalated"
    [ticket] = harness.call("GET", "/v1/tickets", key=key).json["tickets"]
    assert "I don't know" in ticket["reason"] and ticket["conversation_id"] == conversation


def test_staff_move_a_ticket_on_and_other_tenants_cannot(harness: Harness) -> None:
    _, key = tenant_with_policy(harness)
    _, other_key = harness.new_tenant("Other")
    chat(harness, key, "Let me talk to someone please")
    [ticket] = harness.call("GET", "/v1/tickets", key=key).json["tickets"]
    path = f"/v1/tickets/{ticket['ticket_id']}"

    moved = harness.call("PATCH", path, {"status": "in_progress"}, key=key)
    assert moved.status == 200 and moved.json["status"] == "in_progress", moved
    assert moved.json["updated_at"] >= ticket["updated_at"]
    assert harness.call("PATCH", path, {"status": "resolved"}, key=other_key).status == 404
    assert harness.call("PATCH", path, {"status": "lost"}, key=key).status == 422
    assert harness.call("PATCH", "/v1/tickets/x_nope", {"status": "closed"}, key=key).status == 404
    assert harness.call("GET", "/v1/tickets", key=other_key).json["tickets"] == []


def test_a_key_without_the_tickets_scope_cannot_see_them(harness: Harness) -> None:
    tenant_id, _ = harness.new_tenant()
    chat_only = harness.admin("POST", f"/v1/admin/tenants/{tenant_id}/keys", {"name": "bot", "scopes": ["chat"]})
    key = chat_only.json["api_key"]
    assert chat(harness, key, "I need a human")["route"] == "escalated"  # the chat key escalates...
    assert harness.call("GET", "/v1/tickets", key=key).status == 403  # ...but staff work the tickets
