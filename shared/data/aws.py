"""boto3 clients, built lazily and once per process, with timeouts and retries set.

Locally and in tests the endpoints point at emulated AWS (moto's server) and DynamoDB Local.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from shared.lazy import lazy
from shared.settings import Settings

_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    tcp_keepalive=True,
)
# Presigned uploads signed with SigV4, as every region takes them (botocore may pick the old SigV2 for us-east-1
# and custom endpoints), on the bucket's regional host: the global one can answer a new bucket with a redirect,
# which a browser's upload does not survive. (An endpoint that is an IP address, as locally, stays path-style.)
# Up to 16 connections: the vector store reads a pack in byte ranges, 16 at once (shared/data/vectors.py).
_S3_CONFIG = Config(signature_version="s3v4", s3={"addressing_style": "virtual"}, max_pool_connections=16)
# DynamoDB answers in milliseconds: a call that takes seconds is a dependency in trouble, and the caller is
# better served by a 503 soon than by a request that hangs for the function's whole timeout.
_DYNAMODB_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
)
# The admin API's billing run: once, never retried (a retry while the first still runs would start a second run),
# and waited for until just before API Gateway's 29 s; a longer run goes on and is seen in billing/runs.
_BILLING_INVOKE_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=27)
# The readiness probe asks once, briefly: its answer is "up now or not", never a retried wait.
_PROBE_CONFIG = Config(retries={"total_max_attempts": 1}, connect_timeout=1, read_timeout=2)
# Error codes meaning "the service cannot take this now; the same request may succeed later".
_UNAVAILABLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "TransactionConflictException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "RequestThrottled",
        "SlowDown",
        # Reasons inside a cancelled transaction:
        "TransactionConflict",
        "ThrottlingError",
    }
)


class AwsClients:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session = boto3.session.Session(region_name=settings.region)

    def _client(self, service: str, endpoint_url: str | None = None, config: Config = _CLIENT_CONFIG) -> Any:
        return self._session.client(
            service,
            endpoint_url=endpoint_url or self._settings.aws_endpoint_url,
            config=config,
        )

    @lazy
    def dynamodb(self) -> Any:
        return self._client("dynamodb", self._settings.dynamodb_endpoint_url, _DYNAMODB_CONFIG)

    @lazy
    def probes(self) -> DependencyProbes:
        return DependencyProbes(
            self._client("dynamodb", self._settings.dynamodb_endpoint_url, _PROBE_CONFIG),
            self._client("sqs", config=_PROBE_CONFIG),
            self._settings,
        )

    @lazy
    def sqs(self) -> Any:
        return self._client("sqs")

    @lazy
    def s3(self) -> Any:
        return self._client("s3", config=_CLIENT_CONFIG.merge(_S3_CONFIG))

    @lazy
    def sns(self) -> Any:
        return self._client("sns")

    @lazy
    def ses(self) -> Any:
        return self._client("ses")

    @lazy
    def secrets(self) -> Any:
        return self._client("secretsmanager")

    @lazy
    def lambda_(self) -> Any:
        return self._client("lambda", config=_BILLING_INVOKE_CONFIG)


def error_code(error: ClientError) -> str:
    """The AWS error code of a failed call, e.g. "ConditionalCheckFailedException"."""
    return str(error.response.get("Error", {}).get("Code", ""))


def is_unavailable(error: BaseException) -> bool:
    """Whether an AWS call failed because the service could not be reached or could not take the request now
    (after the client's own retries): what a caller should see as 503, not as a bug."""
    if isinstance(error, BotocoreConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        codes = {error_code(error)}
        # A cancelled transaction is retryable when what cancelled it was a conflict or throttling.
        codes |= {str(r.get("Code", "")) for r in error.response.get("CancellationReasons", [])}
        return bool(codes & _UNAVAILABLE_CODES)
    return False


class DependencyProbes:
    """One quick call to each dependency the API needs, for GET /health/ready."""

    def __init__(self, dynamodb: Any, sqs: Any, settings: Settings) -> None:
        self._dynamodb = dynamodb
        self._sqs = sqs
        self._settings = settings

    def check(self) -> dict[str, str]:
        checks = {}
        for name, probe in (("dynamodb", self._check_dynamodb), ("sqs", self._check_sqs)):
            try:
                probe()
                checks[name] = "ok"
            except Exception as error:  # whatever it is, the dependency is not usable now
                checks[name] = f"failed: {type(error).__name__}"
        return checks

    def _check_dynamodb(self) -> None:
        self._dynamodb.get_item(
            TableName=self._settings.tenants_table, Key={"pk": {"S": "health"}, "sk": {"S": "probe"}}
        )

    def _check_sqs(self) -> None:
        self._sqs.get_queue_attributes(QueueUrl=self._settings.usage_queue_url, AttributeNames=["QueueArn"])
