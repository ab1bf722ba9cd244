"""The public HTTP API: every route goes to the chat function (FastAPI routes inside it)."""

from __future__ import annotations

from aws_cdk import CfnOutput
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from shared.resources import physical_name
from stacks.stage_config import StageConfig


class ChatApi(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig, handler: lambda_.IFunction) -> None:
        super().__init__(scope, construct_id)
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=physical_name(stage.name, "api"),
            description=f"DocuChat {stage.name} public API",
            default_integration=integrations.HttpLambdaIntegration(
                "ChatIntegration", handler, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
            ),
            # The default stage is made below: HttpApi's own cannot be given throttling.
            create_default_stage=False,
        )
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=stage.api_throttle_rate, burst_limit=stage.api_throttle_burst),
        )
        # No trailing slash, like the local default (http://127.0.0.1:8000), so paths can be appended as-is.
        self.base_url: str = self.http_api.api_endpoint
        CfnOutput(self, "Url", value=self.base_url, description="Base URL of the DocuChat API")
