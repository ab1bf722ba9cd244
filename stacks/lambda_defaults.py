"""The one place DocuChat's Lambda defaults live: runtime, architecture, logging, tracing, layer, sizing."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from shared.resources import physical_name
from stacks.retention import log_retention, removal_policy
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
        """A function named after its service; memory and timeout come from the stage's sizing for it.

        Each call makes a new function with its own execution role, so grants on one never reach another.
        """
        construct_id = service.capitalize()
        sizing = self.stage.functions[service]
        log_group = logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=log_retention(self.stage),
            removal_policy=removal_policy(self.stage),
        )
        return lambda_.Function(
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
            snap_start=lambda_.SnapStartConf.ON_PUBLISHED_VERSIONS if snap_start else None,
        )


def _application_log_level(level: str) -> lambda_.ApplicationLogLevel:
    try:
        return _APPLICATION_LOG_LEVELS[level.upper()]
    except KeyError:
        raise ValueError(f"log_level {level!r} is not one of {sorted(_APPLICATION_LOG_LEVELS)}") from None
