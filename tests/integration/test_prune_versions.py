"""tools/prune_versions.py against moto's Lambda: versions published, an alias on one, the superseded deleted."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import boto3
import pytest

from tests.support.aws import MotoAws
from tools.prune_versions import main

FUNCTION = "docuchat-prod-chat"  # what --stage prod names
REGION = "eu-central-1"


def client(aws: MotoAws, service: str) -> Any:
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=aws.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def code(revision: int) -> bytes:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("handler.py", f"def handle(event, context):\n    return {revision}\n")
    return archive.getvalue()


@pytest.fixture
def lambda_with_versions(moto_aws: MotoAws) -> Any:
    """Given the chat function with six published versions and `live` moved back to the third (a rollback)."""
    moto_aws.reset()
    trust = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}
    role = client(moto_aws, "iam").create_role(RoleName="chat", AssumeRolePolicyDocument=json.dumps(trust))
    functions = client(moto_aws, "lambda")
    functions.create_function(
        FunctionName=FUNCTION,
        Runtime="python3.13",
        Role=role["Role"]["Arn"],
        Handler="handler.handle",
        Code={"ZipFile": code(0)},
    )
    for revision in range(1, 7):
        functions.update_function_code(FunctionName=FUNCTION, ZipFile=code(revision))
        functions.publish_version(FunctionName=FUNCTION)
    functions.create_alias(FunctionName=FUNCTION, Name="live", FunctionVersion="3")
    return functions


def remaining(functions: Any) -> list[str]:
    pages = functions.get_paginator("list_versions_by_function").paginate(FunctionName=FUNCTION)
    return [version["Version"] for page in pages for version in page["Versions"]]


def test_a_dry_run_names_the_superseded_versions_and_deletes_nothing(
    lambda_with_versions: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # When the prune runs with --dry-run
    assert main(["--stage", "prod", "--keep", "2", "--dry-run"], lambda_client=lambda_with_versions) == 0
    # Then it says what it would delete, and every version is still there
    assert "would delete 3 superseded version(s): 1, 2, 4" in capsys.readouterr().out
    assert remaining(lambda_with_versions) == ["$LATEST", "1", "2", "3", "4", "5", "6"]


def test_the_prune_deletes_all_but_the_newest_and_the_aliased(lambda_with_versions: Any) -> None:
    # When the prune keeps the newest two
    assert main(["--function", FUNCTION, "--keep", "2"], lambda_client=lambda_with_versions) == 0
    # Then the newest two and the one `live` serves stay
    assert remaining(lambda_with_versions) == ["$LATEST", "3", "5", "6"]
    # And `live` still resolves to a version that exists
    live = lambda_with_versions.get_alias(FunctionName=FUNCTION, Name="live")
    assert live["FunctionVersion"] == "3"
