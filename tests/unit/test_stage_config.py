"""The functions' concurrency settings in a stage: what a stage may say, and what it is refused."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from stacks.stage_config import CDK_JSON, DEFAULT_SIZING, StageConfig, load_stage


def _dev_with(**changes: Any) -> StageConfig:
    """dev's settings from cdk.json with `changes` on top."""
    settings = json.loads(CDK_JSON.read_text())["context"]["stages"]["dev"]
    return StageConfig(name="dev", **{**settings, **changes})


def test_a_stage_names_only_the_sizing_it_changes() -> None:
    # When
    stage = _dev_with(functions={"chat": {"reserved_concurrency": 50}})
    # Then: chat keeps its memory and timeout, the other functions all of their defaults
    assert stage.functions["chat"].reserved_concurrency == 50
    assert stage.functions["chat"].memory_mb == DEFAULT_SIZING["chat"].memory_mb
    assert stage.functions["chat"].provisioned_concurrency == 0
    assert {name: stage.functions[name] for name in DEFAULT_SIZING if name != "chat"} == {
        name: sizing for name, sizing in DEFAULT_SIZING.items() if name != "chat"
    }


def test_dev_reserves_nothing_and_prod_reserves_within_a_default_account() -> None:
    # New accounts may have a concurrency limit of 10, with 100 always kept unreserved: dev must reserve none.
    dev, prod = load_stage("dev"), load_stage("prod")
    assert all(sizing.reserved_concurrency is None for sizing in dev.functions.values())
    reserved = [sizing.reserved_concurrency for sizing in prod.functions.values()]
    assert None not in reserved
    assert sum(r for r in reserved if r) <= 1_000 - 100
    assert all(sizing.provisioned_concurrency == 0 for sizing in prod.functions.values())


@pytest.mark.parametrize(
    ("changes", "refusal"),
    [
        ({"functions": {"stream": {"reserved_concurrency": 2, "provisioned_concurrency": 3}}}, "cannot exceed"),
        ({"functions": {"billing": {"provisioned_concurrency": 1}}}, "only chat, stream"),
        ({"snap_start": True, "functions": {"chat": {"provisioned_concurrency": 1}}}, "one or the other"),
        ({"functions": {"metering": {"reserved_concurrency": 1}}}, "at least 2"),
        ({"functions": {"chatbot": {"memory_mb": 512}}}, "no functions of DocuChat"),
        ({"functions": {"chat": {"reserved_concurrency": 0}}}, "greater than or equal to 1"),
    ],
)
def test_concurrency_a_function_cannot_have_is_refused(changes: dict[str, Any], refusal: str) -> None:
    with pytest.raises(ValidationError, match=refusal):
        _dev_with(**changes)


def test_provisioned_concurrency_within_the_reservation_on_a_door_is_taken() -> None:
    stage = _dev_with(functions={"stream": {"reserved_concurrency": 10, "provisioned_concurrency": 2}})
    assert stage.functions["stream"].provisioned_concurrency == 2
