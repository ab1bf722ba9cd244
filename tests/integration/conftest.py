"""Integration fixtures: the functions' real environment against moto (and DynamoDB Local where marked)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local.fake_zibal import FakeZibal
from shared.container import Container, load_settings
from tests.support.embedders import HashingEmbedder
from tests.support.harness import ADMIN_KEY, Harness


@pytest.fixture
def zibal() -> Iterator[FakeZibal]:
    with FakeZibal() as gateway:
        yield gateway


def _set_environment(
    monkeypatch: pytest.MonkeyPatch, moto_aws: Any, zibal: FakeZibal, dynamodb_endpoint_url: str | None = None
) -> dict[str, str]:
    """Fresh resources, and the environment CDK gives the functions pointed at them and the fake gateway."""
    moto_aws.reset()
    # DynamoDB Local keeps its tables for the session: a stage of the test's own keeps tests apart.
    stage = "t" + uuid.uuid4().hex[:10] if dynamodb_endpoint_url else "test"
    config, env = moto_aws.provision(dynamodb_endpoint_url, stage)
    values = {
        **config.runtime_environment(),
        **env,
        "DOCUCHAT_AWS_ENDPOINT_URL": moto_aws.endpoint_url,
        "DOCUCHAT_ADMIN_KEY": ADMIN_KEY,
        "DOCUCHAT_ZIBAL_BASE_URL": zibal.base_url,
        "DOCUCHAT_PUBLIC_BASE_URL": "https://api.docuchat.test",
        # Tests revoke a key or suspend a tenant and check the next request at once; the cache has tests of its own.
        "DOCUCHAT_CREDENTIAL_CACHE_SECONDS": "0",
        # Tests upload a document and ask about it at once; the trust has tests of its own.
        "DOCUCHAT_INDEX_TRUST_SECONDS": "0",
    }
    if dynamodb_endpoint_url:
        values["DOCUCHAT_DYNAMODB_ENDPOINT_URL"] = dynamodb_endpoint_url
    else:
        values["DOCUCHAT_METERING_CONCURRENCY"] = "1"  # moto's transactions are not thread-safe
        values["DOCUCHAT_VECTOR_WRITE_CONCURRENCY"] = "1"  # nor its updates
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def function_env(moto_aws: Any, zibal: FakeZibal, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    return _set_environment(monkeypatch, moto_aws, zibal)


@pytest.fixture
def harness(function_env: dict[str, str], clock: Any) -> Harness:
    return Harness(_container(clock), function_env)


def _container(clock: Any) -> Container:
    """The functions' container; the embedder is a fast stand-in (tests of the real ones say so)."""
    container = Container(load_settings(), clock=clock)
    container.embedder = HashingEmbedder()
    return container


@pytest.fixture(params=["moto", pytest.param("dynamodb_local", marks=pytest.mark.dynamodb_local)])
def any_harness(
    request: pytest.FixtureRequest, moto_aws: Any, zibal: FakeZibal, monkeypatch: pytest.MonkeyPatch, clock: Any
) -> Harness:
    """The harness with DynamoDB on moto, then on DynamoDB Local (AWS's implementation); the rest on moto."""
    endpoint = request.getfixturevalue("dynamodb_local").endpoint_url if request.param == "dynamodb_local" else None
    env = _set_environment(monkeypatch, moto_aws, zibal, endpoint)
    return Harness(_container(clock), env)
