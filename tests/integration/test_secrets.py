"""Settings take their secrets from Secrets Manager at cold start; a placeholder counts as unset."""

from __future__ import annotations

from typing import Any

import boto3

from shared.container import load_settings
from shared.settings import UNSET_SECRET


def secret(endpoint: str, name: str, value: str) -> str:
    client = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
    return str(client.create_secret(Name=name, SecretString=value)["ARN"])


def test_secrets_fill_the_settings_and_the_placeholder_means_no_key(moto_aws: Any) -> None:
    # Given a deployed stage whose OpenAI secret an operator has not set yet
    moto_aws.reset()
    endpoint = moto_aws.endpoint_url
    unset = secret(endpoint, "openai", UNSET_SECRET)
    admin = secret(endpoint, "admin", "generated-admin-key")
    merchant = secret(endpoint, "merchant", "real-merchant-id")

    # When a function loads its settings
    settings = load_settings(
        aws_endpoint_url=endpoint,
        openai_secret_arn=unset,
        admin_key_secret_arn=admin,
        zibal_merchant_secret_arn=merchant,
    )

    # Then the admin key and merchant come from their secrets, and the placeholder leaves the LLM off
    assert settings.admin_api_key is not None and settings.admin_api_key.get_secret_value() == "generated-admin-key"
    assert settings.zibal_merchant == "real-merchant-id"
    assert not settings.llm_enabled

    # And once the operator puts the real key in, the next cold start uses it
    real = secret(endpoint, "openai-set", "sk-real")
    assert load_settings(aws_endpoint_url=endpoint, openai_secret_arn=real).llm_enabled
