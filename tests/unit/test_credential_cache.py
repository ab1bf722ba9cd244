"""A warm function trusts a key and a tenant it read for a while: two DynamoDB reads fewer per request."""

from __future__ import annotations

from shared.access.authenticator import RecentlyRead


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_value_is_read_once_within_its_time_and_again_after() -> None:
    # Given a store that counts its reads
    clock, reads = Clock(), []
    recent = RecentlyRead(30, clock)

    def read() -> str:
        reads.append(clock.now)
        return f"value at {clock.now}"

    # When it is asked three times within 30 s, then once after
    first = recent.get("k", read)
    clock.now = 29.9
    assert recent.get("k", read) == first
    clock.now = 30.0
    # Then the store was read at the start and once the 30 s were over: a revocation bites within them
    assert recent.get("k", read) == "value at 30.0"
    assert reads == [0.0, 30.0]


def test_with_no_time_every_request_reads() -> None:
    reads = []
    recent = RecentlyRead(0, Clock())
    for _ in range(3):
        recent.get("k", lambda: reads.append(1))
    assert len(reads) == 3


def test_different_keys_are_kept_apart() -> None:
    recent = RecentlyRead(30, Clock())
    assert recent.get(("key", "t1", "k1"), lambda: "one") == "one"
    assert recent.get(("key", "t1", "k2"), lambda: "two") == "two"
    assert recent.get(("key", "t1", "k1"), lambda: "changed") == "one"


def test_what_this_process_changed_is_read_again_at_once() -> None:
    recent = RecentlyRead(30, Clock())
    recent.get(("key", "t1", "k1"), lambda: "active")
    recent.forget(("key", "t1", "k1"))  # this process revoked it
    assert recent.get(("key", "t1", "k1"), lambda: "revoked") == "revoked"
