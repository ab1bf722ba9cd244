"""The one place DocuChat's Lambda defaults live: runtime, architecture, logging, tracing, layer, sizing."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.resources import physical_name
from stacks.retention import log_retention, removal_policy
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64

# With JSON logs Lambda filters by level itself (INFO unless told), so it must let through what Powertools logs.
_APPLICATION_LOG_LEVELS = {
    "DEBUG": lambda_.ApplicationLogLevel.DEBUG,
    "INFO": lambda_.ApplicationLogLevel.INFO,
    "WARNING": lambda_.ApplicationLogLevel.WARN,
    "WARN": lambda_.ApplicationLogLevel.WARN,
    "ERROR": lambda_.ApplicationLogLevel.ERROR,
    "CRITICAL": lambda_.ApplicationLogLevel.FATAL,
}


def dependency_layer(scope: Construct, construct_id: str, layer_dir: str) -> lambda_.LayerVersion:
    return lambda_.LayerVersion(
        scope,
        construct_id,
        code=lambda_.Code.from_asset(layer_dir),
        compatible_runtimes=[RUNTIME],
        compatible_architectures=[ARCHITECTURE],
        description="DocuChat run-time dependencies (requirements.txt without boto3), built by layers/build_layer.py",
    )


@dataclass(frozen=True)
class PythonFunctionFactory:
    """Makes DocuChat functions that differ only in what the caller passes; everything else is set here."""

    stage: StageConfig
    code: lambda_.Code
    layer: lambda_.ILayerVersion

    def create(
        self,
        scope: Construct,
        service: str,
        *,
        handler: str,
        environment: dict[str, str],
        snap_start: bool = False,
    ) -> lambda_.Function:
        """A function named after its service; memory, timeout and concurrency come from the stage's sizing for it.

        Each call makes a new function with its own execution role, so grants on one never reach another. The role
        may write to the function's own log group only (not AWS's managed policy, which allows every log group).
        """
        construct_id = service.capitalize()
        sizing = self.stage.functions[service]
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=log_retention(self.stage),
            removal_policy=removal_policy(self.stage),
        )
        accept(log_group, LOG_GROUP_KEY)
        role = iam.Role(
            scope,
            f"{construct_id}ServiceRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"DocuChat {service} ({self.stage.name}) function",
        )
        log_group.grant_write(role)
        accept(role, TRACING_PERMISSION)
        function = lambda_.Function(
            scope,
            construct_id,
            function_name=physical_name(self.stage.name, service),
            description=f"DocuChat {service} ({self.stage.name})",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=handler,
            code=self.code,
            layers=[self.layer],
            memory_size=sizing.memory_mb,
            timeout=Duration.seconds(sizing.timeout_seconds),
            environment={**environment, "POWERTOOLS_SERVICE_NAME": service},
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=_application_log_level(self.stage.log_level),
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
            role=role,
            reserved_concurrent_executions=sizing.reserved_concurrency,
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
            # A published version replaced by the next deploy is deleted, not kept: with SnapStart each version's
            # snapshot is billed for as long as the version exists.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.DESTROY),
        )
        accept(function, *FUNCTION_FINDINGS)
        return function


# What every function leaves as it is, and why (docs/decisions/0015-security-scan.md).
TRACING_PERMISSION = Accepted(
    "AwsSolutions-IAM5",
    "X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions: Resource * is the only "
    "way to allow active tracing",
    applies_to=("Resource::*",),
)
FUNCTION_FINDINGS = (
    Accepted(
        "AwsSolutions-L1",
        "Python 3.13 on purpose: the dependency layer is built for it (layers/build_layer.py) and `make test` runs "
        "the unit and integration tiers on it; moving to a newer runtime is its own change",
    ),
    Accepted(
        "CKV_AWS_116",
        "Lambda's dead-letter queue is for asynchronous invocations only. The doors and chat's call to billing invoke "
        "synchronously, queue consumers' failures go to their queue's own DLQ, and the scheduled functions' runs have "
        "an on-failure destination in their EventInvokeConfig (stacks/schedule.py), which supersedes DeadLetterConfig",
    ),
    Accepted(
        "CKV_AWS_117",
        "The functions call only public endpoints (AWS APIs, OpenAI, Zibal, tenants' webhooks); a VPC would need a NAT "
        "gateway (over $30 a month, three times the whole idle budget) or a VPC endpoint per service",
    ),
    Accepted(
        "CKV_AWS_173",
        "The environment holds names, ARNs and settings, never secrets (those are read from Secrets Manager at cold "
        "start); Lambda encrypts it at rest with its AWS-managed key, and a customer key costs $1 a month",
    ),
)
LOG_GROUP_KEY = Accepted(
    "CKV_AWS_158",
    "CloudWatch Logs encrypts every log group at rest already; a customer-managed KMS key would add $1 a month for "
    "each key, against an idle budget of $10 a month",
)


def _application_log_level(level: str) -> lambda_.ApplicationLogLevel:
    try:
        return _APPLICATION_LOG_LEVELS[level.upper()]
    except KeyError:
        raise ValueError(f"log_level {level!r} is not one of {sorted(_APPLICATION_LOG_LEVELS)}") from None
