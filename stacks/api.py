"""The public doors: the HTTP API (every route, to the chat function, buffered) and the streaming Function URL.

HTTP APIs cannot stream, so streamed answers (`stream: true`) come through a Function URL in RESPONSE_STREAM
mode, in front of the stream function: the same app, run by a runtime loop that streams
(docs/decisions/0007-streaming.md). Both doors serve every route; clients that stream use the second.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import jsii
from aws_cdk import CfnOutput, Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.resources import CORS_ALLOWED_HEADERS, CORS_EXPOSED_HEADERS, physical_name
from stacks.lambda_defaults import LOG_GROUP_KEY
from stacks.retention import log_retention, removal_policy
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

CORS_MAX_AGE = Duration.minutes(10)

# One JSON line a request. requestId is the chat function's correlation_id, which joins a line to the function's
# own lines (those name the tenant: the app checks keys itself, so there is no authorizer context to log here).
ACCESS_LOG_FIELDS = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "routeKey": "$context.routeKey",
    "method": "$context.httpMethod",
    "path": "$context.path",
    "status": "$context.status",
    "latency": "$context.responseLatency",
    "integrationLatency": "$context.integrationLatency",
    "responseLength": "$context.responseLength",
    "ip": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "integrationStatus": "$context.integrationStatus",
    "integrationErrorMessage": "$context.integrationErrorMessage",
    "errorMessage": "$context.error.message",
}


def _http_api_cors(origins: Sequence[str]) -> apigwv2.CorsPreflightOptions | None:
    """CORS for pages from `origins` (none: browsers of other origins are not let in)."""
    if not origins:
        return None
    return apigwv2.CorsPreflightOptions(
        allow_origins=list(origins),
        allow_methods=[apigwv2.CorsHttpMethod.ANY],
        allow_headers=list(CORS_ALLOWED_HEADERS),
        expose_headers=list(CORS_EXPOSED_HEADERS),
        max_age=CORS_MAX_AGE,
    )


OWN_AUTHORIZATION = Accepted(
    "AwsSolutions-APIG4",
    "The app authorizes every request itself (API keys, tenants' JWTs, scopes: shared/access/), and some routes must "
    "stay public (Zibal's payment callback, /health); an API Gateway authorizer would add a second invocation per "
    "request to make the same check",
)
PUBLIC_FUNCTION_URL = Accepted(
    "CKV_AWS_258",
    "Browsers and SDKs cannot sign requests with SigV4 (AWS_IAM); the app behind the URL checks each request's key "
    "or JWT itself, exactly as behind the HTTP API",
)


@jsii.implements(apigwv2.IAccessLogSettings)
class _JsonAccessLogs:
    """ACCESS_LOG_FIELDS as JSON into `log_group` (an interface in CDK, so a class here)."""

    def __init__(self, log_group: logs.ILogGroup) -> None:
        self._destination = apigwv2.LogGroupLogDestination(log_group)

    @property
    def destination(self) -> apigwv2.IAccessLogDestination:
        return self._destination

    @property
    def format(self) -> apigw.AccessLogFormat:
        return apigw.AccessLogFormat.custom(json.dumps(ACCESS_LOG_FIELDS))


class ChatApi(Construct):
    """`origins`: the pages that may call it from a browser (the stage's `cors_allowed_origins`, the web app)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        handler: lambda_.IFunction,
        origins: Sequence[str],
    ) -> None:
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
            cors_preflight=_http_api_cors(origins),
        )
        accept(self.http_api, OWN_AUTHORIZATION)
        self.access_logs = logs.LogGroup(
            self, "AccessLogs", retention=log_retention(stage), removal_policy=removal_policy(stage)
        )
        accept(self.access_logs, LOG_GROUP_KEY)
        self.stage = apigwv2.HttpStage(
            self,
            "DefaultStage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(rate_limit=stage.api_throttle_rate, burst_limit=stage.api_throttle_burst),
            access_log_settings=_JsonAccessLogs(self.access_logs),
        )
        # No trailing slash, like the local default (http://127.0.0.1:8000), so paths can be appended as-is.
        self.base_url: str = self.http_api.api_endpoint
        # A fixed key, not one derived from the construct path: tools/smoke.py finds the API by it.
        CfnOutput(self, "Url", key="ApiUrl", value=self.base_url, description="Base URL of the DocuChat API")


class StreamingUrl(Construct):
    """A Function URL that streams: auth NONE (the app checks keys itself, as behind the HTTP API).

    `origins`: the pages that may call it from a browser, as for ChatApi.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, function: lambda_.IFunction, origins: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        cors = None
        if origins:
            cors = lambda_.FunctionUrlCorsOptions(
                allowed_origins=list(origins),
                allowed_methods=[lambda_.HttpMethod.ALL],
                allowed_headers=list(CORS_ALLOWED_HEADERS),
                exposed_headers=list(CORS_EXPOSED_HEADERS),
                max_age=CORS_MAX_AGE,
            )
        self.function_url = function.add_function_url(
            auth_type=lambda_.FunctionUrlAuthType.NONE, invoke_mode=lambda_.InvokeMode.RESPONSE_STREAM, cors=cors
        )
        accept(self.function_url, PUBLIC_FUNCTION_URL)
        self.url: str = self.function_url.url
        description = "Streaming URL of the DocuChat API (stream: true)"
        CfnOutput(self, "Url", key="StreamingUrl", value=self.url, description=description)
