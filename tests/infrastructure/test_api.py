"""The HTTP API in front of chat (SnapStart where the stage asks) and the nightly billing schedule."""

from __future__ import annotations

import json

from stacks.schedule import SCHEDULE_INPUT
from tests.infrastructure.synthesized import SynthesizedStage, props


def test_the_http_api_proxies_every_route_to_chat_with_payload_2(synthesized: SynthesizedStage) -> None:
    # Given
    api_id, api = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    chat_id, _ = synthesized.function("chat")
    # When
    _, route = synthesized.one_of_type("AWS::ApiGatewayV2::Route")
    integration_id, integration = synthesized.one_of_type("AWS::ApiGatewayV2::Integration")
    # Then
    assert props(api)["ProtocolType"] == "HTTP"
    assert props(route)["RouteKey"] == "$default"
    assert props(route)["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}
    assert props(integration)["IntegrationType"] == "AWS_PROXY"
    assert props(integration)["PayloadFormatVersion"] == "2.0"
    invoked = synthesized.target(props(integration)["IntegrationUri"])
    assert invoked == chat_id or chat_id in synthesized.targets(props(synthesized.resources[invoked]))
    # Then: API Gateway may invoke exactly what it integrates
    permissions = [
        props(p)
        for p in synthesized.of_type("AWS::Lambda::Permission").values()
        if props(p)["Principal"] == "apigateway.amazonaws.com"
    ]
    assert [synthesized.target(p["FunctionName"]) for p in permissions] == [invoked]
    assert api_id in synthesized.targets(permissions[0]["SourceArn"])


def test_the_default_stage_is_throttled_as_the_stage_config_says(synthesized: SynthesizedStage) -> None:
    # When
    _, stage = synthesized.one_of_type("AWS::ApiGatewayV2::Stage")
    # Then
    assert props(stage)["StageName"] == "$default"
    assert props(stage)["AutoDeploy"] is True
    assert props(stage)["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": synthesized.stage.api_throttle_rate,
        "ThrottlingBurstLimit": synthesized.stage.api_throttle_burst,
    }


def test_the_api_url_is_an_output(synthesized: SynthesizedStage) -> None:
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    outputs = synthesized.service_json["Outputs"]
    assert {"Fn::GetAtt": [api_id, "ApiEndpoint"]} in [o["Value"] for o in outputs.values()]


def test_snap_start_and_the_alias_follow_the_stage(synthesized: SynthesizedStage) -> None:
    # Given
    chat_id, chat = synthesized.function("chat")
    _, integration = synthesized.one_of_type("AWS::ApiGatewayV2::Integration")
    invoked = synthesized.target(props(integration)["IntegrationUri"])
    # Then
    if synthesized.stage.snap_start:
        assert props(chat)["SnapStart"] == {"ApplyOn": "PublishedVersions"}
        alias = synthesized.resources[invoked]
        assert alias["Type"] == "AWS::Lambda::Alias"
        assert synthesized.target(props(alias)["FunctionName"]) == chat_id
        version = synthesized.resources[synthesized.target(props(alias)["FunctionVersion"])]
        assert version["Type"] == "AWS::Lambda::Version"
        assert synthesized.target(props(version)["FunctionName"]) == chat_id
    else:
        assert "SnapStart" not in props(chat)
        assert invoked == chat_id
    # Then: no other function pays for SnapStart
    others = [fid for fid in ("ingestion", "metering", "billing") if "SnapStart" in props(synthesized.function(fid)[1])]
    assert others == []


def test_billing_runs_nightly_on_the_stage_cron_and_time_zone(synthesized: SynthesizedStage) -> None:
    # Given
    stage = synthesized.stage
    billing_id, _ = synthesized.function("billing")
    # When
    _, schedule = synthesized.one_of_type("AWS::Scheduler::Schedule")
    properties = props(schedule)
    target = properties["Target"]
    # Then
    assert properties["ScheduleExpression"] == stage.billing_cron
    assert properties["ScheduleExpression"] == f"cron({stage.billing_minute} {stage.billing_hour} * * ? *)"
    assert properties["ScheduleExpressionTimezone"] == stage.billing_timezone
    assert properties["State"] == "ENABLED"
    assert synthesized.target(target["Arn"]) == billing_id
    assert json.loads(target["Input"]) == SCHEDULE_INPUT == {"source": "docuchat.schedule"}
    assert 1 <= target["RetryPolicy"]["MaximumRetryAttempts"] <= 5


def test_failed_billing_invocations_land_in_a_watched_dead_letter_queue(synthesized: SynthesizedStage) -> None:
    # Given
    _, schedule = synthesized.one_of_type("AWS::Scheduler::Schedule")
    dlq_id = synthesized.target(props(schedule)["Target"]["DeadLetterConfig"]["Arn"])
    # When
    _, async_config = synthesized.one_of_type("AWS::Lambda::EventInvokeConfig")
    # Then: the same queue catches runs that failed inside billing after Lambda's retries
    assert synthesized.resources[dlq_id]["Type"] == "AWS::SQS::Queue"
    assert synthesized.target(props(async_config)["DestinationConfig"]["OnFailure"]["Destination"]) == dlq_id
    assert synthesized.target(props(async_config)["FunctionName"]) == synthesized.function("billing")[0]
    assert synthesized.alarms_watching("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq_id})
