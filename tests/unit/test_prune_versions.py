"""Which superseded Lambda versions tools/prune_versions.py deletes: a pure choice over versions and aliases."""

from __future__ import annotations

import pytest

from tools.prune_versions import pinned_versions, versions_to_delete

TEN_VERSIONS = ["$LATEST", *(str(n) for n in range(1, 11))]


def test_keeps_the_newest_and_deletes_the_older_ones_oldest_first() -> None:
    # Given ten published versions (listed as Lambda lists them, $LATEST first) and no alias
    # When three are kept
    doomed = versions_to_delete(TEN_VERSIONS, pinned=set(), keep=3)
    # Then the newest three and $LATEST stay, the seven older go, oldest first
    assert doomed == ["1", "2", "3", "4", "5", "6", "7"]


def test_orders_versions_as_numbers_not_as_text() -> None:
    # Given versions 9 and 10, where "9" > "10" as text
    # When one is kept, then it is 10
    assert versions_to_delete(["10", "9", "$LATEST"], pinned=set(), keep=1) == ["9"]


def test_never_deletes_a_version_an_alias_serves_or_shifts_traffic_to() -> None:
    # Given `live` on version 2 with a tenth of its traffic on version 4, and `rollback` on version 1
    aliases = [
        {"Name": "live", "FunctionVersion": "2", "RoutingConfig": {"AdditionalVersionWeights": {"4": 0.1}}},
        {"Name": "rollback", "FunctionVersion": "1"},
    ]
    pinned = pinned_versions(aliases)
    assert pinned == {"1", "2", "4"}
    # When the newest three are kept
    doomed = versions_to_delete(TEN_VERSIONS, pinned, keep=3)
    # Then the aliased versions survive although they are old
    assert doomed == ["3", "5", "6", "7"]


def test_nothing_to_delete_when_there_are_no_more_than_kept() -> None:
    assert versions_to_delete(["$LATEST", "1", "2"], pinned=set(), keep=3) == []
    assert versions_to_delete(["$LATEST"], pinned=set(), keep=0) == []


def test_keep_zero_deletes_every_version_no_alias_serves() -> None:
    assert versions_to_delete(TEN_VERSIONS, pinned={"10"}, keep=0) == [str(n) for n in range(1, 10)]


def test_a_negative_keep_is_refused() -> None:
    with pytest.raises(ValueError, match="keep"):
        versions_to_delete(TEN_VERSIONS, pinned=set(), keep=-1)
