"""The DynamoDB tables, exactly as shared.resources.TABLES defines them."""

from __future__ import annotations

from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from shared.resources import TABLES, Attribute, TableSpec
from stacks.retention import removal_policy
from stacks.security_checks import Accepted, accept
from stacks.stage_config import StageConfig

_ATTRIBUTE_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


AWS_MANAGED_TABLE_KEY = Accepted(
    "CKV_AWS_119",
    "Encrypted with DynamoDB's AWS-managed key (aws/dynamodb); a customer-managed key costs $1 a month and would be "
    "usable by the same roles that may read the tables",
)
NO_RECOVERY_IN_THIS_STAGE = Accepted(
    "AwsSolutions-DDB3",
    "This stage's data is disposable (point_in_time_recovery off in cdk.json); PITR is billed per GB-month and is on "
    "wherever data is kept (staging, prod)",
)


class Tables(Construct):
    """One on-demand table per TableSpec; `by_id` maps a spec's id to its table."""

    def __init__(self, scope: Construct, construct_id: str, *, stage: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self.by_id: dict[str, dynamodb.Table] = {spec.id: self._table(spec, stage) for spec in TABLES}

    def _table(self, spec: TableSpec, stage: StageConfig) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            spec.id.capitalize(),
            table_name=spec.physical_name(stage.name),
            partition_key=_attribute(spec.partition_key),
            sort_key=_attribute(spec.sort_key) if spec.sort_key else None,
            time_to_live_attribute=spec.ttl_attribute,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=stage.point_in_time_recovery
            ),
            removal_policy=removal_policy(stage),
            deletion_protection=stage.retain_data,
        )
        accept(table, AWS_MANAGED_TABLE_KEY)
        if not stage.point_in_time_recovery:
            accept(table, NO_RECOVERY_IN_THIS_STAGE)
        for index in spec.indexes:
            table.add_global_secondary_index(
                index_name=index.name,
                partition_key=_attribute(index.partition_key),
                sort_key=_attribute(index.sort_key) if index.sort_key else None,
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table


def _attribute(attribute: Attribute) -> dynamodb.Attribute:
    return dynamodb.Attribute(name=attribute.name, type=_ATTRIBUTE_TYPES[attribute.type])
