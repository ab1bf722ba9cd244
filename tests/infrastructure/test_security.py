"""cdk-nag's AwsSolutions pack over every stage, the reasons for what is left as it is, and the settings that keep
a function's concurrency, failures and deleted data in bounds (docs/decisions/0015-security-scan.md)."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from shared.resources import FUNCTIONS, QUEUES, QueueSpec
from stacks.security_checks import NAG_PREFIX, PENDING_FINDINGS, blocking
from stacks.stage_config import load_stage
from stacks.storage import NONCURRENT_VERSION_DAYS
from tests.infrastructure.synthesized import SynthesizedStage, props, synthesize_stage

FUNCTION_IDS = sorted(FUNCTIONS)


def test_cdk_nag_finds_nothing_that_is_neither_fixed_nor_accepted(synthesized: SynthesizedStage) -> None:
    # Then: every error and warning of the AwsSolutions pack is fixed or accepted with a reason on its resource
    assert [str(f) for f in blocking(synthesized.nag_findings)] == []


def test_the_pending_findings_are_still_there(synthesized: SynthesizedStage) -> None:
    # Then: once the work that fixes one lands, it must leave PENDING_FINDINGS (else a new finding would hide there)
    assert {f.rule_id for f in synthesized.nag_findings} == {r for r in PENDING_FINDINGS if r.startswith(NAG_PREFIX)}


def test_every_checkov_skip_says_why(synthesized: SynthesizedStage) -> None:
    # When
    skips = [
        (rid, skip)
        for rid, resource in synthesized.resources.items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    ]
    # Then: there are some, each a check id with a reason of more than a few words
    assert skips
    for rid, skip in skips:
        assert skip["id"].startswith("CKV_"), (rid, skip)
        assert len(skip["comment"].split()) >= 8, (rid, skip)


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_function_reserves_the_concurrency_its_stage_gives_it(
    synthesized: SynthesizedStage, function_id: str
) -> None:
    # When
    _, function = synthesized.function(function_id)
    # Then
    assert props(function).get("ReservedConcurrentExecutions") == (
        synthesized.stage.functions[function_id].reserved_concurrency
    )


@pytest.mark.parametrize("queue", QUEUES, ids=lambda q: q.id)
def test_a_consumer_with_reserved_concurrency_is_handed_no_more_batches_than_it_may_run(
    synthesized: SynthesizedStage, queue: QueueSpec
) -> None:
    # Given
    queue_id, _ = synthesized.queue(queue.physical_name(synthesized.stage.name))
    reserved = synthesized.stage.functions[queue.consumer].reserved_concurrency
    # When
    [mapping] = [
        props(m)
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if synthesized.targets(props(m)["EventSourceArn"]) == {queue_id}
    ]
    # Then: throttled batches would go back to the queue and, counted as receives, on to its DLQ
    assert mapping.get("ScalingConfig", {}).get("MaximumConcurrency") == reserved


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_role_may_write_only_its_own_function_logs(synthesized: SynthesizedStage, function_id: str) -> None:
    # Given
    _, function = synthesized.function(function_id)
    role_id = synthesized.target(props(function)["Role"])
    log_group_id = synthesized.target(props(function)["LoggingConfig"]["LogGroup"])
    # When
    granted = synthesized.grants_of_role(role_id)
    # Then: no managed policy (AWSLambdaBasicExecutionRole allows every log group), its own log group only
    assert "ManagedPolicyArns" not in props(synthesized.resources[role_id])
    assert granted["logs:PutLogEvents"] == {log_group_id}
    assert granted["logs:CreateLogStream"] == {log_group_id}


def test_deleted_documents_can_be_restored_for_a_week_and_are_then_gone(synthesized: SynthesizedStage) -> None:
    # When
    _, bucket = synthesized.documents_bucket()
    properties = props(bucket)
    # Then: versioned, and a deleted or overwritten object's old version expires
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    [rule] = properties["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert "Prefix" not in rule and "Filter" not in rule  # sources and vectors alike
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": NONCURRENT_VERSION_DAYS}
    assert rule["ExpiredObjectDeleteMarker"] is True
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert NONCURRENT_VERSION_DAYS <= 7


@cache
def _with_provisioned_doors() -> SynthesizedStage:
    """dev with provisioned concurrency on both doors (and none of SnapStart): synthesized once for these tests."""
    dev = load_stage("dev")
    sizing = {
        name: dev.functions[name].model_copy(update={"reserved_concurrency": 10, "provisioned_concurrency": 2})
        for name in ("chat", "stream")
    }
    return synthesize_stage(dev.model_copy(update={"functions": {**dev.functions, **sizing}}))


def _alias_of(synthesized: SynthesizedStage, function_id: str) -> tuple[str, dict[str, Any]]:
    prefix = f"Functions{function_id.capitalize()}LiveAlias"
    alias_id = synthesized.with_id_prefix("AWS::Lambda::Alias", prefix)
    return alias_id, synthesized.resources[alias_id]


@pytest.mark.parametrize("function_id", ["chat", "stream"])
def test_provisioned_concurrency_is_kept_on_the_alias_that_function_doors_call(function_id: str) -> None:
    # Given
    synthesized = _with_provisioned_doors()
    function_id_in_template, function = synthesized.function(function_id)
    # When
    _, alias = _alias_of(synthesized, function_id)
    # Then: the `live` alias keeps two instances of the current version ready, within the function's reservation
    assert props(alias)["Name"] == "live"
    assert props(alias)["ProvisionedConcurrencyConfig"] == {"ProvisionedConcurrentExecutions": 2}
    assert synthesized.target(props(alias)["FunctionName"]) == function_id_in_template
    version = synthesized.resources[synthesized.target(props(alias)["FunctionVersion"])]
    assert version["Type"] == "AWS::Lambda::Version"
    assert props(function)["ReservedConcurrentExecutions"] == 10
    assert "SnapStart" not in props(function)
    assert [str(f) for f in blocking(synthesized.nag_findings)] == []


def test_with_provisioned_concurrency_both_doors_call_the_alias() -> None:
    # Given
    synthesized = _with_provisioned_doors()
    chat_alias_id, _ = _alias_of(synthesized, "chat")
    _, stream_alias = _alias_of(synthesized, "stream")
    # When
    _, integration = synthesized.one_of_type("AWS::ApiGatewayV2::Integration")
    _, url = synthesized.one_of_type("AWS::Lambda::Url")
    # Then: the HTTP API integrates the alias; the streaming URL is the alias's (its qualifier), not $LATEST's
    assert synthesized.target(props(integration)["IntegrationUri"]) == chat_alias_id
    assert synthesized.target(props(url)["TargetFunctionArn"]) == synthesized.function("stream")[0]
    assert props(url)["Qualifier"] == props(stream_alias)["Name"]
