"""The web app: web/ in a private bucket, served by CloudFront with the security headers of stacks/web_policy.py.

The app is static files with no build step; the one thing that differs per stage is `config.json` (the API's and
the streaming URL's addresses), generated at deploy time beside the files.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnOutput, Duration, Fn, Token
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3deploy
from constructs import Construct

from stacks.retention import removal_policy
from stacks.security_checks import Accepted, accept, for_reason
from stacks.stage_config import PROJECT_ROOT, StageConfig
from stacks.web_policy import SECURITY_HEADERS, content_security_policy

WEB_ROOT = PROJECT_ROOT / "web"
# Docs and tests live beside the app's files but are not part of it.
NOT_DEPLOYED = ["*.md", "tests/*", "*.test.js"]
# Sent by CloudFront's typed security headers (below); every other entry of SECURITY_HEADERS goes as a custom header.
_TYPED_HEADERS = {"Strict-Transport-Security", "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy"}
HSTS_MAX_AGE = Duration.seconds(63_072_000)  # two years, as SECURITY_HEADERS says


def api_sources(region: str) -> list[str]:
    """Where the app may connect for the API and streaming URL: those hosts of the stage's region.

    Not the two exact URLs: the distribution uses the headers policy, the policy would name the API and the
    Function URL, and their CORS names the distribution, so CloudFormation could create none of them first
    (a circular dependency). The API and the Function URL get random host names, so the narrowest source
    that does not refer to them is their service's host pattern in this region.
    """
    return [f"https://*.execute-api.{region}.amazonaws.com", f"https://*.lambda-url.{region}.on.aws"]


def origin_of(url: str) -> str:
    """`https://host` of an `https://host/...` URL (a Function URL ends in a slash), resolved on deploy if need be."""
    if not Token.is_unresolved(url):
        return "https://" + url.split("/")[2]
    return Fn.join("", ["https://", Fn.select(2, Fn.split("/", url))])


WEB_BUCKET_FINDINGS = (
    *for_reason(
        "The bucket holds the release's copy of web/ and nothing else; only CloudFront reads it (OAC) and only the "
        "deployment writes it. Its access logs would need a log bucket of their own",
        "AwsSolutions-S1",
        "CKV_AWS_18",
    ),
    Accepted(
        "CKV_AWS_21",
        "Versions would only keep old releases of web/, which git has; every deploy replaces the files (prune)",
    ),
)
DISTRIBUTION_FINDINGS = (
    *for_reason(
        "The app is static, public files; what users do goes to the API. CloudFront standard logs need an S3 bucket "
        "with ACLs enabled; left out until someone needs the web app's traffic",
        "AwsSolutions-CFR3",
        "CKV_AWS_86",
    ),
    *for_reason(
        "AWS WAF costs $5 a month a web ACL plus $1 a rule, above the idle budget, for static files; the API, where "
        "abuse would cost money, has its own throttling and per-key limits",
        "AwsSolutions-CFR2",
        "CKV_AWS_68",
    ),
    *for_reason(
        "The distribution uses CloudFront's default *.cloudfront.net certificate, with which CloudFront sets the "
        "security policy itself (TLSv1). A custom domain with an ACM certificate would allow TLSv1.2_2021",
        "AwsSolutions-CFR4",
        "CKV_AWS_174",
    ),
    Accepted("AwsSolutions-CFR1", "Tenants and their users may be anywhere: no country is to be refused"),
)


class WebApp(Construct):
    """Bucket, distribution and headers policy; `publish` then uploads web/ and its config.json.

    Two steps because the API's CORS needs `origin` (this distribution's address) before the API exists, and
    config.json needs the API's address.
    """

    def __init__(
        self, scope: Construct, construct_id: str, *, stage: StageConfig, upload_origins: Sequence[str]
    ) -> None:
        super().__init__(scope, construct_id)
        self.bucket = s3.Bucket(
            self,
            "Bucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            removal_policy=removal_policy(stage),
            auto_delete_objects=not stage.retain_data,
        )
        accept(self.bucket, *WEB_BUCKET_FINDINGS)
        self.headers = cloudfront.ResponseHeadersPolicy(
            self,
            "Headers",
            comment=f"DocuChat {stage.name} web app: CSP and security headers (stacks/web_policy.py)",
            security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
                content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                    content_security_policy=content_security_policy([*api_sources(stage.region), *upload_origins]),
                    override=True,
                ),
                strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                    access_control_max_age=HSTS_MAX_AGE, include_subdomains=True, override=True
                ),
                content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
                frame_options=cloudfront.ResponseHeadersFrameOptions(
                    frame_option=cloudfront.HeadersFrameOption.DENY, override=True
                ),
                referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                    referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True
                ),
            ),
            custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(
                custom_headers=[
                    cloudfront.ResponseCustomHeader(header=name, value=value, override=True)
                    for name, value in SECURITY_HEADERS.items()
                    if name not in _TYPED_HEADERS
                ]
            ),
        )
        # The app's own routes (/chat, /documents) are no files: answer them with the app. Through OAC, S3 says
        # 403 (not 404) for a key that does not exist, since CloudFront may not list the bucket.
        spa_routes = [
            cloudfront.ErrorResponse(http_status=status, response_http_status=200, response_page_path="/index.html")
            for status in (403, 404)
        ]
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"DocuChat {stage.name} web app",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=self.headers,
            ),
            default_root_object="index.html",
            error_responses=spa_routes,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
        )
        accept(self.distribution, *DISTRIBUTION_FINDINGS)
        self.origin: str = "https://" + self.distribution.distribution_domain_name
        CfnOutput(self, "Url", key="WebUrl", value=self.origin, description="The DocuChat web app")

    def publish(self, *, stage: StageConfig, api_url: str, streaming_url: str) -> s3deploy.BucketDeployment:
        """Uploads web/ and a config.json naming the API, then has CloudFront forget what it cached."""
        config = {"stage": stage.name, "api_url": api_url, "streaming_url": origin_of(streaming_url)}
        return s3deploy.BucketDeployment(
            self,
            "Files",
            destination_bucket=self.bucket,
            sources=[
                s3deploy.Source.asset(str(WEB_ROOT), exclude=NOT_DEPLOYED),
                s3deploy.Source.json_data("config.json", config),
            ],
            # The files keep their names from one release to the next (no build step adds a hash), so a browser
            # must ask again each time (a cheap 304 while unchanged) rather than run last release's app.js.
            cache_control=[s3deploy.CacheControl.no_cache()],
            # For the same reason every path, not only index.html and config.json (one path to CloudFront, too).
            distribution=self.distribution,
            distribution_paths=["/*"],
            prune=True,
            memory_limit=256,
        )
