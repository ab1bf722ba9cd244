"""The HTTP API in front of chat, with SnapStart where the stage asks for it."""

from __future__ import annotations

import json

from tests.infrastructure.synthesized import SynthesizedStage, props
from tools import smoke


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


def test_the_api_url_is_the_output_the_smoke_test_reads_in_the_stack_it_names(synthesized: SynthesizedStage) -> None:
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    outputs = synthesized.service_json["Outputs"]
    assert outputs[smoke.API_URL_OUTPUT]["Value"] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
    assert smoke.SERVICE_STACK.format(stage=synthesized.stage.name) == synthesized.service_stack_name


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
        assert props(alias)["Name"] == "live"
        assert "ProvisionedConcurrencyConfig" not in props(alias)  # Lambda refuses it with SnapStart
        assert synthesized.target(props(alias)["FunctionName"]) == chat_id
        version = synthesized.resources[synthesized.target(props(alias)["FunctionVersion"])]
        assert version["Type"] == "AWS::Lambda::Version"
        assert synthesized.target(props(version)["FunctionName"]) == chat_id
        # Then: a version the next deploy replaces is deleted, so only one snapshot is ever billed
        assert version["DeletionPolicy"] == "Delete"
    else:
        assert "SnapStart" not in props(chat)
        assert invoked == chat_id
    # Then: no other function pays for SnapStart
    others = [
        fid
        for fid in ("stream", "ingestion", "metering", "billing", "webhooks")
        if "SnapStart" in props(synthesized.function(fid)[1])
    ]
    assert others == []


def test_without_provisioned_concurrency_the_streaming_url_calls_latest(synthesized: SynthesizedStage) -> None:
    # Given: no stage in cdk.json provisions the stream function (tests/infrastructure/test_security.py does)
    assert synthesized.stage.functions["stream"].provisioned_concurrency == 0
    # When
    _, url = synthesized.one_of_type("AWS::Lambda::Url")
    # Then
    assert synthesized.target(props(url)["TargetFunctionArn"]) == synthesized.function("stream")[0]
    # Then: the one alias is chat's, where the stage turns SnapStart on
    assert len(synthesized.of_type("AWS::Lambda::Alias")) == (1 if synthesized.stage.snap_start else 0)


def test_streamed_answers_have_a_function_url_that_streams_in_every_stage(synthesized: SynthesizedStage) -> None:
    # Given
    stream_id, stream = synthesized.function("stream")
    # When
    _, url = synthesized.one_of_type("AWS::Lambda::Url")
    # Then: the stream function's URL, in response-streaming mode; the app checks keys itself
    assert synthesized.target(props(url)["TargetFunctionArn"]) == stream_id
    assert props(url)["InvokeMode"] == "RESPONSE_STREAM"
    assert props(url)["AuthType"] == "NONE"
    # Then: anyone may call the URL (and only the URL), and its address is an output
    public = [
        props(p)
        for p in synthesized.of_type("AWS::Lambda::Permission").values()
        if props(p).get("FunctionUrlAuthType") == "NONE"
    ]
    assert [synthesized.target(p["FunctionName"]) for p in public] == [stream_id]
    assert all(p["Action"] == "lambda:InvokeFunctionUrl" and p["Principal"] == "*" for p in public)
    outputs = synthesized.service_json["Outputs"]
    url_id, _ = synthesized.one_of_type("AWS::Lambda::Url")
    assert outputs["StreamingUrl"]["Value"] == {"Fn::GetAtt": [url_id, "FunctionUrl"]}
    # Then: its timeout allows answers longer than API Gateway's 29 s
    assert props(stream)["Timeout"] > 29


def test_cors_lets_in_the_stage_origins_and_the_web_app_on_both_doors(synthesized: SynthesizedStage) -> None:
    # Given
    distribution_id, _ = synthesized.one_of_type("AWS::CloudFront::Distribution")
    web_app = {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}
    # When
    _, api = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    _, url = synthesized.one_of_type("AWS::Lambda::Url")
    # Then
    for cors in (props(api)["CorsConfiguration"], props(url)["Cors"]):
        assert cors["AllowOrigins"] == [*synthesized.stage.cors_allowed_origins, web_app]
        assert "Authorization" in (cors.get("AllowHeaders") or [])
        assert "X-RateLimit-Remaining" in (cors.get("ExposeHeaders") or [])


def test_the_default_stage_writes_json_access_logs_with_the_request_id(synthesized: SynthesizedStage) -> None:
    # When
    _, stage = synthesized.one_of_type("AWS::ApiGatewayV2::Stage")
    settings = props(stage)["AccessLogSettings"]
    fields = json.loads(settings["Format"])
    # Then: one JSON line a request, keyed by the request id (the chat function's correlation_id)
    assert fields["requestId"] == "$context.requestId"
    for name, variable in {
        "routeKey": "$context.routeKey",
        "status": "$context.status",
        "latency": "$context.responseLatency",
        "integrationLatency": "$context.integrationLatency",
        "ip": "$context.identity.sourceIp",
        "userAgent": "$context.identity.userAgent",
        "integrationErrorMessage": "$context.integrationErrorMessage",
    }.items():
        assert fields[name] == variable, name
    # And into a log group of its own, kept as long as the stage keeps logs
    log_group = synthesized.resources[synthesized.target(settings["DestinationArn"])]
    assert log_group["Type"] == "AWS::Logs::LogGroup"
    assert props(log_group)["RetentionInDays"] == synthesized.stage.log_retention_days
