"""Secrets Manager secrets: the OpenAI key, the admin API key and the Zibal merchant id.

Each is named by the environment variable that carries its ARN to the functions (see shared.settings).
"""

from __future__ import annotations

from aws_cdk import CfnOutput, SecretValue
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from shared.settings import UNSET_SECRET
from stacks.retention import removal_policy
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

OPENAI_SECRET_ENV = "DOCUCHAT_OPENAI_SECRET_ARN"
ADMIN_KEY_SECRET_ENV = "DOCUCHAT_ADMIN_KEY_SECRET_ARN"
ZIBAL_MERCHANT_SECRET_ENV = "DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"

# Which function reads which secret; each gets read access to exactly these.
SECRETS_BY_FUNCTION: dict[str, tuple[str, ...]] = {
    # The merchant too: the payment callback verifies with Zibal (verify, and inquiry on "already verified").
    "chat": (OPENAI_SECRET_ENV, ADMIN_KEY_SECRET_ENV, ZIBAL_MERCHANT_SECRET_ENV),
    "stream": (OPENAI_SECRET_ENV, ADMIN_KEY_SECRET_ENV, ZIBAL_MERCHANT_SECRET_ENV),  # the same app as chat
    "billing": (ZIBAL_MERCHANT_SECRET_ENV,),
    "ingestion": (OPENAI_SECRET_ENV,),  # OpenAI's embeddings, when a key is set
}

# Put in at deploy time and replaced by an operator; the CfnOutputs below say how. The functions treat it as unset.
OPENAI_KEY_PLACEHOLDER = UNSET_SECRET
# Zibal's public sandbox merchant: payments work end to end but move no money until the real id is set.
ZIBAL_SANDBOX_MERCHANT = "zibal"


THIRD_PARTY_SECRET = Accepted(
    "AwsSolutions-SMG4",
    "Issued by a third party (OpenAI's key, Zibal's merchant id): only that party can issue a new one, so a rotation "
    "function has nothing to rotate to; an operator replaces it (docs/runbooks/deploy.md)",
)
ADMIN_KEY_ROTATION = Accepted(
    "AwsSolutions-SMG4",
    "The admin key is used by operators' tools (make reconcile) as well as the functions, which read it once at cold "
    "start: automatic rotation would lock both out until they caught up. It is rotated by hand (put-secret-value)",
)
STANDARD_SECRET_KEY = Accepted(
    "CKV_AWS_149",
    "Encrypted with Secrets Manager's AWS-managed key (aws/secretsmanager); a customer-managed key costs $1 a month "
    "and would protect against nothing more here (the same roles would be allowed to use it)",
)


class Secrets(Construct):
    """`by_env_var` maps an environment variable name to the secret whose ARN it carries."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(scope, construct_id)
        openai_key = secretsmanager.Secret(
            self,
            "OpenAiApiKey",
            description=f"DocuChat {stage.name}: OpenAI API key used by chat",
            secret_string_value=SecretValue.unsafe_plain_text(OPENAI_KEY_PLACEHOLDER),
            removal_policy=removal_policy(stage),
        )
        admin_key = secretsmanager.Secret(
            self,
            "AdminApiKey",
            description=f"DocuChat {stage.name}: key of the admin API (generated)",
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=48, exclude_punctuation=True),
            removal_policy=removal_policy(stage),
        )
        zibal_merchant = secretsmanager.Secret(
            self,
            "ZibalMerchant",
            description=f"DocuChat {stage.name}: Zibal merchant id (billing requests payments, chat verifies them)",
            secret_string_value=SecretValue.unsafe_plain_text(ZIBAL_SANDBOX_MERCHANT),
            removal_policy=removal_policy(stage),
        )
        accept(openai_key, THIRD_PARTY_SECRET, STANDARD_SECRET_KEY)
        accept(zibal_merchant, THIRD_PARTY_SECRET, STANDARD_SECRET_KEY)
        accept(admin_key, ADMIN_KEY_ROTATION, STANDARD_SECRET_KEY)
        self.by_env_var: dict[str, secretsmanager.Secret] = {
            OPENAI_SECRET_ENV: openai_key,
            ADMIN_KEY_SECRET_ENV: admin_key,
            ZIBAL_MERCHANT_SECRET_ENV: zibal_merchant,
        }
        CfnOutput(
            self,
            "SetOpenAiKey",
            description="The OpenAI key secret holds a placeholder until this is run with the real key",
            value=f"aws secretsmanager put-secret-value --secret-id {openai_key.secret_arn} --secret-string <key>",
        )
        CfnOutput(
            self,
            "SetZibalMerchant",
            description="The Zibal merchant secret holds the sandbox merchant until this is run with the real id",
            value=f"aws secretsmanager put-secret-value --secret-id {zibal_merchant.secret_arn} --secret-string <id>",
        )
        CfnOutput(
            self,
            "ReadAdminKey",
            description="Prints the generated admin API key",
            value=f"aws secretsmanager get-secret-value --secret-id {admin_key.secret_arn} --query SecretString",
        )
