"""The escalation router's rules: who goes to a person, who gets a direct answer, who gets the documents."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shared.escalation.router import DONT_KNOW_PREFIX, Route, decide
from shared.models import Message

NOW = datetime(2026, 11, 20, tzinfo=UTC)


def said(role: str, content: str) -> Message:
    return Message(role=role, content=content, created_at=NOW)


@pytest.mark.parametrize(
    "question",
    [
        "I want to speak to a human",
        "Let me talk to someone please",
        "Can you connect me with a live agent?",
        "please transfer me to a representative",
        "I need a real person",
        "Can I get a human being on the line?",
        "escalate this to a manager",
        "talk with your supervisor, now",
        "می‌خواهم با یک اپراتور صحبت کنم",
    ],
)
def test_asking_for_a_person_escalates(question: str) -> None:
    assert decide(question, ()).route == Route.ESCALATE


@pytest.mark.parametrize(
    "question",
    [
        "This is useless, my parcel never came",
        "What a scam. Where is my money?",
        "I'm so angry about the delay",
        "WHY HAS NOBODY ANSWERED MY EMAIL!!!",
        "این افتضاح است",
    ],
)
def test_an_angry_tone_escalates(question: str) -> None:
    assert decide(question, ()).route == Route.ESCALATE


@pytest.mark.parametrize(
    "question",
    [
        "What is the worst case delivery time?",
        "How do I reach a person in the refunds team by email?",
        "Who should I talk to about a refund?",
        "Is the agent model angry-proof?",
        "Does the manager approve refunds over 100?",
        "What does a support agent do on day one?",
        "NASA",  # short capitals are not shouting
        "What is the API rate limit per minute?",
    ],
)
def test_ordinary_questions_go_to_the_documents(question: str) -> None:
    assert decide(question, ()).route == Route.DOCUMENTS


@pytest.mark.parametrize("question", ["hi", "Hello!", "thanks", "Thank you.", "ok", "سلام", "good morning"])
def test_small_talk_is_direct(question: str) -> None:
    assert decide(question, ()).route == Route.DIRECT


def test_two_i_dont_knows_in_the_last_three_answers_escalate() -> None:
    dont_know = f"{DONT_KNOW_PREFIX}: none of your documents seem to cover that."
    history = [said("user", "a?"), said("assistant", dont_know), said("user", "b?"), said("assistant", "Yes.")]
    assert decide("c?", history).route == Route.DOCUMENTS
    history += [said("user", "c?"), said("assistant", dont_know)]
    assert decide("d?", history).route == Route.ESCALATE
    answered = [*history, said("user", "e?"), said("assistant", "Yes."), said("user", "f?"), said("assistant", "No.")]
    assert decide("g?", answered).route == Route.DOCUMENTS  # only the last three answers count
