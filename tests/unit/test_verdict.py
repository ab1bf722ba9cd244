"""The model's verdict that the passages do not answer: recognised however it is wrapped, never shown half-written."""

from __future__ import annotations

import pytest

from shared.chat.verdict import NOT_IN_DOCUMENTS, VerdictGate, says_not_in_documents


@pytest.mark.parametrize(
    "reply",
    [
        NOT_IN_DOCUMENTS,
        f"  {NOT_IN_DOCUMENTS}\n",
        f"`{NOT_IN_DOCUMENTS}`",
        f"**{NOT_IN_DOCUMENTS}.**",
        "not_in_documents",
    ],
)
def test_the_verdict_is_recognised_alone_or_wrapped(reply: str) -> None:
    assert says_not_in_documents(reply)


@pytest.mark.parametrize(
    "reply", ["Nothing in the documents says so [1].", "NOT IN THE DOCUMENTS", "The answer is NOT_IN_DOCUMENTS"]
)
def test_an_answer_that_merely_starts_alike_or_mentions_it_is_no_verdict(reply: str) -> None:
    assert not says_not_in_documents(reply)


def stream(gate: VerdictGate, pieces: list[str]) -> str:
    shown = "".join(gate.feed(piece) for piece in pieces)
    return shown + gate.finish()


def test_a_verdict_streamed_a_character_at_a_time_is_never_shown() -> None:
    gate = VerdictGate()
    assert stream(gate, [" ", *NOT_IN_DOCUMENTS]) == ""
    assert gate.verdict


def test_an_answer_that_starts_like_the_verdict_is_passed_on_whole_once_it_differs() -> None:
    # Given an answer whose first pieces could still be the verdict
    gate = VerdictGate()
    # When it is streamed
    first, second, third = gate.feed("NO"), gate.feed("T"), gate.feed("E: the line opens at 9 [1].")
    # Then nothing is shown until it differs, and then all of it, in order
    assert (first, second) == ("", "")
    assert third == "NOTE: the line opens at 9 [1]."
    assert gate.feed(" More.") == " More." and gate.finish() == "" and not gate.verdict


def test_an_answer_cut_short_inside_the_verdicts_prefix_is_shown_at_the_end() -> None:
    gate = VerdictGate()
    assert gate.feed("NOT") == ""
    assert gate.finish() == "NOT" and not gate.verdict


def test_a_disabled_gate_passes_everything_at_once_and_gives_no_verdict() -> None:
    gate = VerdictGate(enabled=False)
    assert stream(gate, ["NOT_IN", "_DOCUMENTS"]) == NOT_IN_DOCUMENTS
    assert not gate.verdict


def test_the_citations_are_sent_once() -> None:
    gate = VerdictGate()
    assert [gate.cite(), gate.cite(), gate.cite()] == [True, False, False]
