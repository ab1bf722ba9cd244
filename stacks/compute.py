"""The Lambda functions of shared.resources.FUNCTIONS, each with its own least-privilege role.

What a function may touch is read from its FunctionSpec: the same spec fields give it both the permission on a
resource and the environment variable that tells the code where that resource is.
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from layers.build_layer import layer_dir
from shared.resources import DOCUMENTS_BUCKET, FUNCTIONS, FunctionSpec, queue_by_id, table_by_id, topic_by_id
from stacks.data import Tables
from stacks.function_bundle import function_code_dir
from stacks.lambda_defaults import PythonFunctionFactory, dependency_layer
from stacks.messaging import Queues, Topics
from stacks.secrets import SECRETS_BY_FUNCTION, Secrets
from stacks.security_checks import Accepted, accept
from stacks.stage_config import DOOR_FUNCTIONS, INDEX_FUNCTIONS, SNAP_START_FUNCTION, StageConfig, index_cache_rows

# The function behind the HTTP API.
API_FUNCTION = "chat"
# The function behind the streaming Function URL.
STREAM_FUNCTION = "stream"
TASK_ROOT = "/var/task"  # where Lambda unpacks the code bundle
LIVE_ALIAS = "live"


def grant_wildcards(spec: FunctionSpec) -> list[Accepted]:
    """The wildcards CDK's grants write into the policy of `spec`'s role, each within one named resource."""
    wildcards = [
        Accepted(
            "AwsSolutions-IAM5",
            "grant_read_data / grant_read_write_data: the table's own indexes (<table ARN>/index/*), for its queries",
            applies_to=(r"/^Resource::.*\/index\/\*$/",),
        )
    ]
    if spec.bucket_access != "none":
        s3_actions = ("s3:GetObject*", "s3:GetBucket*", "s3:List*", "s3:DeleteObject*", "s3:Abort*")
        wildcards.append(
            Accepted(
                "AwsSolutions-IAM5",
                "grant_read / grant_read_write on the documents bucket: CDK's action groups, on that bucket and its "
                "objects only; the code confines each tenant to its own prefix",
                applies_to=(*(f"Action::{action}" for action in s3_actions), r"/^Resource::.*DocumentsBucket.*\/\*$/"),
            )
        )
    if spec.invokes:
        wildcards.append(
            Accepted(
                "AwsSolutions-IAM5",
                "grant_invoke: the invoked function and its versions (<function ARN>:*), that function only",
                applies_to=(r"/^Resource::<Functions[A-Za-z]+[0-9A-F]{8}\.Arn>:\*$/",),
            )
        )
    if spec.sends_email:
        wildcards.append(
            Accepted(
                "AwsSolutions-IAM5",
                "SES checks the identity a sender belongs to, which the code does not name; the statement's condition "
                "allows only the stage's sender (ses:FromAddress)",
                applies_to=(r"/^Resource::arn:<AWS::Partition>:ses:.*:identity\/\*$/",),
            )
        )
    return wildcards


def invoke_env_var(function_id: str) -> str:
    """The variable that names a function another one calls, e.g. DOCUCHAT_BILLING_FUNCTION_NAME."""
    return f"DOCUCHAT_{function_id.upper()}_FUNCTION_NAME"


class Functions(Construct):
    """`by_id` maps a FunctionSpec id to its function; `entry_points` maps each of DOOR_FUNCTIONS to what its door
    (the HTTP API, the streaming URL) invokes: the function itself, or its `live` alias where the stage wants
    published versions (SnapStart, provisioned concurrency)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        stage: StageConfig,
        tables: Tables,
        queues: Queues,
        bucket: s3.IBucket,
        secrets: Secrets,
        topics: Topics,
    ) -> None:
        super().__init__(scope, construct_id)
        self._topics = topics
        self._stage = stage
        self._tables = tables
        self._queues = queues
        self._bucket = bucket
        self._secrets = secrets
        factory = PythonFunctionFactory(
            stage=stage,
            code=lambda_.Code.from_asset(str(function_code_dir())),
            layer=dependency_layer(self, "DependencyLayer", str(layer_dir())),
        )
        self.by_id: dict[str, lambda_.Function] = {
            spec.id: factory.create(
                self,
                spec.id,
                handler=spec.handler,
                environment=self._environment(spec),
                snap_start=stage.snap_start and spec.id == SNAP_START_FUNCTION,
            )
            for spec in FUNCTIONS.values()
        }
        for spec in FUNCTIONS.values():
            self._grant(spec, self.by_id[spec.id])
        self.entry_points: dict[str, lambda_.IFunction] = {
            function_id: self._entry_point(function_id) for function_id in DOOR_FUNCTIONS
        }

    def _environment(self, spec: FunctionSpec) -> dict[str, str]:
        """The environment for `spec`; `_grant` gives access to exactly the resources named here."""
        environment = self._stage.runtime_environment()
        for table_id in (*spec.reads, *spec.writes):
            environment[table_by_id(table_id).env_var] = self._tables.by_id[table_id].table_name
        for queue_id in spec.sends_to:
            environment[queue_by_id(queue_id).env_var] = self._queues.by_id[queue_id].queue.queue_url
        if spec.bucket_access != "none":
            environment[DOCUMENTS_BUCKET.env_var] = self._bucket.bucket_name
        for env_var in SECRETS_BY_FUNCTION.get(spec.id, ()):
            environment[env_var] = self._secrets.by_env_var[env_var].secret_arn
        for topic_id in spec.publishes:
            environment[topic_by_id(topic_id).env_var] = self._topics.by_id[topic_id].topic_arn
        if spec.exec_wrapper:
            environment["AWS_LAMBDA_EXEC_WRAPPER"] = f"{TASK_ROOT}/{spec.exec_wrapper}"
        if spec.id in INDEX_FUNCTIONS:  # the vector indexes it may hold, from its memory
            rows = index_cache_rows(self._stage.functions[spec.id].memory_mb)
            environment["DOCUCHAT_INDEX_CACHE_ROWS"] = str(rows)
        # Names of the functions it invokes are set by _grant, once every function exists.
        return environment

    def _grant(self, spec: FunctionSpec, function: lambda_.Function) -> None:
        if function.role:
            accept(function.role, *grant_wildcards(spec))
        self._grant_data(spec, function)
        self._grant_messaging(spec, function)
        for env_var in SECRETS_BY_FUNCTION.get(spec.id, ()):
            self._secrets.by_env_var[env_var].grant_read(function)
        for target_id in spec.invokes:
            target = self.by_id[target_id]
            target.grant_invoke(function)
            function.add_environment(invoke_env_var(target_id), target.function_name)

    def _grant_data(self, spec: FunctionSpec, function: lambda_.Function) -> None:
        for table_id in spec.reads:
            if table_id not in spec.writes:
                self._tables.by_id[table_id].grant_read_data(function)
        for table_id in spec.writes:
            self._tables.by_id[table_id].grant_read_write_data(function)
        if spec.bucket_access == "read":
            self._bucket.grant_read(function)
        elif spec.bucket_access == "read_write":
            self._bucket.grant_read_write(function)

    def _grant_messaging(self, spec: FunctionSpec, function: lambda_.Function) -> None:
        for queue_id in spec.sends_to:
            self._queues.by_id[queue_id].queue.grant_send_messages(function)
        for topic_id in spec.publishes:
            self._topics.by_id[topic_id].grant_publish(function)
        if spec.sends_email:
            function.add_to_role_policy(self._send_email_statement())

    def _send_email_statement(self) -> iam.PolicyStatement:
        """SES sending, only as the stage's billing sender (SES checks the identity the sender belongs to)."""
        stack = Stack.of(self)
        return iam.PolicyStatement(
            actions=["ses:SendEmail", "ses:SendRawEmail"],
            resources=[stack.format_arn(service="ses", resource="identity", resource_name="*")],
            conditions={"StringEquals": {"ses:FromAddress": self._stage.mail_sender}},
        )

    def _entry_point(self, function_id: str) -> lambda_.IFunction:
        """SnapStart's snapshots and provisioned instances exist only for a published version, so a door must call
        one, through an alias that each deploy moves to the new version; otherwise it calls $LATEST."""
        function = self.by_id[function_id]
        provisioned = self._stage.functions[function_id].provisioned_concurrency
        snap_start = self._stage.snap_start and function_id == SNAP_START_FUNCTION
        if not (provisioned or snap_start):
            return function
        return lambda_.Alias(
            self,
            f"{function_id.capitalize()}LiveAlias",
            alias_name=LIVE_ALIAS,
            version=function.current_version,
            provisioned_concurrent_executions=provisioned or None,
        )
