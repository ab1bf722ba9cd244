"""Integration fixtures: the functions' real environment against moto (and DynamoDB Local where marked)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from local.fake_zibal import FakeZibal
from shared.container import Container, load_settings
from tests.support.harness import ADMIN_KEY, Harness


@pytest.fixture
def zibal() -> Iterator[FakeZibal]:
    with FakeZibal() as gateway:
        yield gateway


@pytest.fixture
def provisioned(moto_aws: Any) -> tuple[Any, dict[str, str]]:
    moto_aws.reset()
    return moto_aws.provision()


@pytest.fixture
def function_env(
    provisioned: tuple[Any, dict[str, str]], moto_aws: Any, zibal: FakeZibal, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The environment CDK gives the functions, pointed at emulated AWS and the fake gateway."""
    config, env = provisioned
    values = {
        **config.runtime_environment(),
        **env,
        "DOCUCHAT_AWS_ENDPOINT_URL": moto_aws.endpoint_url,
        "DOCUCHAT_ADMIN_KEY": ADMIN_KEY,
        "DOCUCHAT_ZIBAL_BASE_URL": zibal.base_url,
        "DOCUCHAT_PUBLIC_BASE_URL": "https://api.docuchat.test",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


@pytest.fixture
def harness(function_env: dict[str, str], clock: Any) -> Harness:
    return Harness(Container(load_settings(), clock=clock), function_env)
