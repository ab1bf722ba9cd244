"""Which of three routes a question takes: from the documents, directly, or to a person.

It escalates when the user asks for a person, when the tone is angry, or when the conversation keeps getting
"I don't know" (two of the last three answers). Small talk ("hi", "thanks") is answered directly, without a
search. Everything else is answered from the documents. The rules are plain word lists, in English and
Persian, so the router works offline and costs nothing; they are deliberately conservative, because a wrong
escalation costs a person's time and a missed one only a retry.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from shared.models import Message

_ASKS_FOR_PERSON = re.compile(
    r"\b(human|real person|a person|someone real|an agent|live agent|representative|operator|speak to (someone|"
    r"somebody|a manager)|talk to (someone|somebody|a manager|support)|customer service|call me)\b"
    r"|اپراتور|کارشناس|با یک (انسان|آدم)|پشتیبان واقعی",
    re.IGNORECASE,
)
_ANGRY = re.compile(
    r"\b(useless|ridiculous|terrible|worst|unacceptable|furious|angry|scam|rubbish|pathetic|waste of (my )?time|"
    r"fed up|sick of|wtf|damn|stupid)\b|افتضاح|مزخرف|بدترین|عصبانی",
    re.IGNORECASE,
)
_SMALL_TALK = re.compile(
    r"^\s*(hi|hello|hey|good (morning|afternoon|evening)|thanks|thank you|thx|ok(ay)?|bye|goodbye|سلام|مرسی|"
    r"ممنون|خداحافظ)[\s!.,?]*$",
    re.IGNORECASE,
)
DONT_KNOW_PREFIX = "I don't know"


class Route(StrEnum):
    DOCUMENTS = "documents"
    DIRECT = "direct"
    ESCALATE = "escalate"


@dataclass(frozen=True)
class Decision:
    route: Route
    reason: str = ""


def decide(question: str, history: Sequence[Message]) -> Decision:
    if _ASKS_FOR_PERSON.search(question):
        return Decision(Route.ESCALATE, "asked for a person")
    if _ANGRY.search(question) or _shouting(question):
        return Decision(Route.ESCALATE, "the tone is angry")
    answers = [m.content for m in history if m.role == "assistant"][-3:]
    if sum(1 for a in answers if a.startswith(DONT_KNOW_PREFIX)) >= 2:
        return Decision(Route.ESCALATE, "the conversation keeps getting 'I don't know'")
    if _SMALL_TALK.match(question):
        return Decision(Route.DIRECT, "small talk")
    return Decision(Route.DOCUMENTS)


def _shouting(question: str) -> bool:
    letters = [c for c in question if c.isalpha() and c.isascii()]
    return len(letters) >= 12 and sum(c.isupper() for c in letters) / len(letters) > 0.8 and "!" in question
