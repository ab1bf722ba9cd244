"""boto3 clients, built lazily and once per process, with timeouts and retries set.

Locally and in tests the endpoints point at emulated AWS (moto's server) and DynamoDB Local.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shared.lazy import lazy
from shared.settings import Settings

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
)


class AwsClients:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session = boto3.session.Session(region_name=settings.region)

    def _client(self, service: str, endpoint_url: str | None = None) -> Any:
        return self._session.client(
            service,
            endpoint_url=endpoint_url or self._settings.aws_endpoint_url,
            config=_CLIENT_CONFIG,
        )

    @lazy
    def dynamodb(self) -> Any:
        return self._client("dynamodb", self._settings.dynamodb_endpoint_url)

    @lazy
    def sqs(self) -> Any:
        return self._client("sqs")

    @lazy
    def s3(self) -> Any:
        return self._client("s3")

    @lazy
    def ses(self) -> Any:
        return self._client("ses")

    @lazy
    def secrets(self) -> Any:
        return self._client("secretsmanager")

    @lazy
    def lambda_(self) -> Any:
        return self._client("lambda")


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call, e.g. "ConditionalCheckFailedException"."""
    return str(error.response.get("Error", {}).get("Code", ""))
