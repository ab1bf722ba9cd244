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

_SOMEONE = (
    r"(a |an |some |your |the )?(real |actual |live |human )?(human( being)?|person|agent|someone|somebody|"
    r"representative|rep|operator|manager|supervisor|staff( member)?|customer service)"
)
_ASKS_FOR_PERSON = re.compile(
    # "let me talk to someone", "connect me with an agent", "escalate this to a manager"
    rf"\b(speak|talk|chat|connect|transfer|escalate|pass|put)( me| this| it)?( through)? (to|with) {_SOMEONE}\b"
    # "I want a human", "can I get a real person", "give me an operator"
    rf"|\b(i (want|need|would like)|i'd like|can i (have|get)|get me|give me) {_SOMEONE}\b"
    r"|\b(real person|real human|live agent|human agent|live person)\b"
    r"|(با )?(یک )?(اپراتور|کارشناس|انسان) (صحبت|حرف)|اپراتور می‌خواهم|پشتیبان واقعی",
    re.IGNORECASE,
)
# Words that are about the service, said in anger; not words that merely appear in questions ("the worst case").
_ANGRY = re.compile(
    r"\b(useless|ridiculous|unacceptable|pathetic|scam|rubbish|wtf|waste of (my )?time|fed up|sick of|"
    r"(i am|i'm|im) (so |really |very )?(angry|furious|mad|livid|fed up))\b|افتضاح|مزخرف|(من )?عصبانی(ام| هستم)",
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
