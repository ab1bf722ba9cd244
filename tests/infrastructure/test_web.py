"""The web app: a private bucket behind CloudFront, its security headers, its files and config, and the CORS that
lets its page call the API, the streaming URL and the documents bucket."""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Environment, Stack

import stacks.web
from shared.resources import UPLOAD_CORS_HEADERS, UPLOAD_CORS_MAX_AGE_SECONDS, UPLOAD_CORS_METHODS
from stacks.web import WEB_ROOT, WebApp, api_sources
from stacks.web_policy import SECURITY_HEADERS, content_security_policy
from tests.infrastructure.synthesized import Resource, SynthesizedStage, actions_of, props

# The shapes of the hosts AWS gives an HTTP API and a Function URL (their ids are random).
API_HOST = "https://a1b2c3d4e5.execute-api.{region}.amazonaws.com"
FUNCTION_URL_HOST = "https://abcdefghijklmnopqrstuvwxyz234567.lambda-url.{region}.on.aws"


def _web_bucket(synthesized: SynthesizedStage) -> tuple[str, Resource]:
    buckets = {rid: r for rid, r in synthesized.service_json["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
    assert len(buckets) == 1, sorted(buckets)
    return next(iter(buckets.items()))


def _default_behavior(synthesized: SynthesizedStage) -> dict[str, Any]:
    _, distribution = synthesized.one_of_type("AWS::CloudFront::Distribution")
    behavior: dict[str, Any] = props(distribution)["DistributionConfig"]["DefaultCacheBehavior"]
    return behavior


def _headers_policy(synthesized: SynthesizedStage) -> dict[str, Any]:
    policy_id = synthesized.target(_default_behavior(synthesized)["ResponseHeadersPolicyId"])
    config: dict[str, Any] = props(synthesized.resources[policy_id])["ResponseHeadersPolicyConfig"]
    return config


def _web_origin(synthesized: SynthesizedStage) -> dict[str, Any]:
    distribution_id, _ = synthesized.one_of_type("AWS::CloudFront::Distribution")
    return {"Fn::Join": ["", ["https://", {"Fn::GetAtt": [distribution_id, "DomainName"]}]]}


def test_the_web_bucket_is_private_and_only_this_distribution_may_read_it(synthesized: SynthesizedStage) -> None:
    # Given
    bucket_id, bucket = _web_bucket(synthesized)
    distribution_id, distribution = synthesized.one_of_type("AWS::CloudFront::Distribution")
    # When
    [policy] = [
        p
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if synthesized.target(props(p)["Bucket"]) == bucket_id
    ]
    statements = props(policy)["PolicyDocument"]["Statement"]
    readers = [
        s for s in statements if s["Effect"] == "Allow" and any(fnmatch("s3:GetObject", a) for a in actions_of(s))
    ]
    # Then: no public access, TLS only
    assert all(props(bucket)["PublicAccessBlockConfiguration"].values())
    assert len(props(bucket)["PublicAccessBlockConfiguration"]) == 4
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}} for s in statements
    )
    # Then: CloudFront reads it, through origin access control, for this distribution only
    assert [s["Principal"] for s in readers] == [{"Service": "cloudfront.amazonaws.com"}]
    assert synthesized.targets(readers[0]["Condition"]["StringEquals"]["AWS:SourceArn"]) == {distribution_id}
    [origin] = props(distribution)["DistributionConfig"]["Origins"]
    assert synthesized.target(origin["DomainName"]) == bucket_id
    oac = synthesized.resources[synthesized.target(origin["OriginAccessControlId"])]
    assert props(oac)["OriginAccessControlConfig"]["SigningBehavior"] == "always"
    assert origin["S3OriginConfig"] == {"OriginAccessIdentity": ""}
    assert bucket["DeletionPolicy"] == ("Retain" if synthesized.stage.retain_data else "Delete")


def test_the_distribution_serves_https_only_with_the_headers_policy(synthesized: SynthesizedStage) -> None:
    # When
    _, distribution = synthesized.one_of_type("AWS::CloudFront::Distribution")
    config = props(distribution)["DistributionConfig"]
    behavior = _default_behavior(synthesized)
    # Then
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert synthesized.resources[synthesized.target(behavior["ResponseHeadersPolicyId"])]["Type"] == (
        "AWS::CloudFront::ResponseHeadersPolicy"
    )
    assert behavior["AllowedMethods"] == ["GET", "HEAD"]
    assert config["DefaultRootObject"] == "index.html"
    assert config["HttpVersion"] == "http2and3"
    assert config["PriceClass"] == "PriceClass_100"


def test_the_apps_routes_are_answered_with_index_html(synthesized: SynthesizedStage) -> None:
    _, distribution = synthesized.one_of_type("AWS::CloudFront::Distribution")
    responses = props(distribution)["DistributionConfig"]["CustomErrorResponses"]
    # Then: 403 too, as S3 answers a missing key through OAC
    assert sorted(responses, key=lambda r: r["ErrorCode"]) == [
        {"ErrorCode": 403, "ResponseCode": 200, "ResponsePagePath": "/index.html"},
        {"ErrorCode": 404, "ResponseCode": 200, "ResponsePagePath": "/index.html"},
    ]


def test_the_csp_allows_only_the_apps_files_the_api_and_the_documents_bucket(synthesized: SynthesizedStage) -> None:
    # Given
    region = synthesized.stage.region
    documents_id, _ = synthesized.documents_bucket()
    uploads = [f"https://${{{documents_id}.RegionalDomainName}}"]  # the host presigned URLs name
    # When
    security = _headers_policy(synthesized)["SecurityHeadersConfig"]
    csp = synthesized.text_of(security["ContentSecurityPolicy"]["ContentSecurityPolicy"])
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    # Then: the policy of stacks/web_policy.py, connecting to the API's and the streaming URL's hosts and the bucket
    assert csp == content_security_policy([*api_sources(region), *uploads])
    assert security["ContentSecurityPolicy"]["Override"] is True
    connect = directives["connect-src"]
    assert any(fnmatch(API_HOST.format(region=region), source) for source in connect)
    assert any(fnmatch(FUNCTION_URL_HOST.format(region=region), source) for source in connect)
    assert set(uploads) <= set(connect)
    assert f"https://${{{documents_id}.DomainName}}" not in connect  # not the global host
    assert directives["script-src"] == ["'self'"]
    assert directives["default-src"] == ["'none'"]
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp


def test_the_distribution_does_not_depend_on_the_api(synthesized: SynthesizedStage) -> None:
    """The API's CORS names the distribution, so neither it nor its headers policy may name the API (a cycle)."""
    # Given
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    url_id, _ = synthesized.one_of_type("AWS::Lambda::Url")
    _, distribution = synthesized.one_of_type("AWS::CloudFront::Distribution")
    policy_id = synthesized.target(_default_behavior(synthesized)["ResponseHeadersPolicyId"])
    # Then
    for resource in (distribution, synthesized.resources[policy_id]):
        assert not synthesized.targets(props(resource)) & {api_id, url_id}


def test_the_security_headers_are_those_the_local_server_sends(synthesized: SynthesizedStage) -> None:
    # When
    policy = _headers_policy(synthesized)
    security = policy["SecurityHeadersConfig"]
    hsts = security["StrictTransportSecurity"]
    sent = {
        "Strict-Transport-Security": f"max-age={hsts['AccessControlMaxAgeSec']}"
        + ("; includeSubDomains" if hsts.get("IncludeSubdomains") else "")
        + ("; preload" if hsts.get("Preload") else ""),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": security["FrameOptions"]["FrameOption"],
        "Referrer-Policy": security["ReferrerPolicy"]["ReferrerPolicy"],
        **{item["Header"]: item["Value"] for item in policy["CustomHeadersConfig"]["Items"]},
    }
    # Then: what stacks/web_policy.py says, so `make dev` and CloudFront agree; each replaces what S3 might send
    assert sent == SECURITY_HEADERS
    assert all(header["Override"] for header in security.values())
    assert all(item["Override"] for item in policy["CustomHeadersConfig"]["Items"])


def test_the_files_and_a_config_naming_the_api_are_deployed(synthesized: SynthesizedStage) -> None:
    # Given
    bucket_id, _ = _web_bucket(synthesized)
    distribution_id, _ = synthesized.one_of_type("AWS::CloudFront::Distribution")
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    url_id, _ = synthesized.one_of_type("AWS::Lambda::Url")
    # When
    _, deployment = synthesized.one_of_type("Custom::CDKBucketDeployment")
    properties = props(deployment)
    folders = [Path(synthesized.service_assets[key.removesuffix(".zip")]) for key in properties["SourceObjectKeys"]]
    # Then: web/ and a generated config.json, into the web bucket, replacing what was there; then CloudFront
    # forgets what it cached
    assert len(folders) == 2
    assert folders[0] == WEB_ROOT
    assert (folders[0] / "index.html").is_file()
    assert synthesized.target(properties["DestinationBucketName"]) == bucket_id
    assert properties["Prune"] is True
    assert synthesized.target(properties["DistributionId"]) == distribution_id
    assert properties["DistributionPaths"] == ["/*"]
    assert properties["SystemMetadata"] == {"cache-control": "no-cache"}
    # Then: config.json's values are the API's address and the streaming URL's origin (no trailing slash, like
    # the API's); the test below reads the file itself
    assert sorted(map(str, properties["SourceMarkers"][1].values())) == sorted(
        map(
            str,
            [
                {"Fn::Join": ["", ['"', {"Fn::GetAtt": [api_id, "ApiEndpoint"]}, '"']]},
                {"Fn::Join": ["", ['"https://', _host_of({"Fn::GetAtt": [url_id, "FunctionUrl"]}), '"']]},
            ],
        )
    )


def _host_of(url: dict[str, Any]) -> dict[str, Any]:
    return {"Fn::Select": [2, {"Fn::Split": ["/", url]}]}


def test_config_json_names_the_stage_the_api_and_the_streaming_origin_and_docs_stay_out(
    synthesized: SynthesizedStage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a web folder with docs and tests beside the app, and a stack whose assets are staged (readable after)
    web = tmp_path / "web"
    for relative in ("index.html", "app.js", "views/chat.js", "README.md", "tests/app.test.js", "lib/api.test.js"):
        (web / relative).parent.mkdir(parents=True, exist_ok=True)
        (web / relative).write_text(relative)
    monkeypatch.setattr(stacks.web, "WEB_ROOT", web)
    app = App(outdir=str(tmp_path / "cdk.out"))
    stack = Stack(app, "Web", env=Environment(region=synthesized.stage.region))
    web_app = WebApp(stack, "Web", stage=synthesized.stage, upload_origins=[])
    # When
    web_app.publish(stage=synthesized.stage, api_url="https://api.example", streaming_url="https://stream.example/")
    assembly = Path(app.synth().directory)
    # Then
    [config] = assembly.glob("asset.*/config.json")
    assert json.loads(config.read_text()) == {
        "stage": synthesized.stage.name,
        "api_url": "https://api.example",
        "streaming_url": "https://stream.example",
    }
    [index] = assembly.glob("asset.*/index.html")
    files = {p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*") if p.is_file()}
    assert files == {"index.html", "app.js", "views/chat.js"}


def test_browsers_may_put_presigned_uploads_from_the_web_app(synthesized: SynthesizedStage) -> None:
    # When
    _, bucket = synthesized.documents_bucket()
    # Then: PUT only, as the local bucket allows (local/bootstrap.py); any CloudFront domain, as the Data stack
    # cannot know the web app's
    assert props(bucket)["CorsConfiguration"] == {
        "CorsRules": [
            {
                "AllowedOrigins": [*synthesized.stage.cors_allowed_origins, "https://*.cloudfront.net"],
                "AllowedMethods": list(UPLOAD_CORS_METHODS),
                "AllowedHeaders": list(UPLOAD_CORS_HEADERS),
                "MaxAge": UPLOAD_CORS_MAX_AGE_SECONDS,
            }
        ]
    }
    assert UPLOAD_CORS_METHODS == ("PUT",)


def test_the_web_url_is_an_output(synthesized: SynthesizedStage) -> None:
    assert synthesized.service_json["Outputs"]["WebUrl"]["Value"] == _web_origin(synthesized)
