"""DocuChat's stacks for one stage: the data that must outlive deployments, and the service that uses it.

docs/decisions/0002-cdk-stack-layout.md says why there are two stacks and why the references between them
only ever point from Service to Data.
"""

from __future__ import annotations

from aws_cdk import App, CrossStackReferences, Environment, ReferenceStrength, Stack, Tags
from constructs import Construct

from shared.resources import DOCUMENTS_BUCKET
from stacks.api import ChatApi, StreamingUrl
from stacks.compute import API_FUNCTION, STREAM_FUNCTION, Functions
from stacks.data import Tables
from stacks.messaging import Queues, Topics, subscribe_consumers
from stacks.monitoring import Monitoring
from stacks.schedule import Schedules
from stacks.secrets import Secrets
from stacks.security_checks import Accepted, accept, apply_checks, for_reason
from stacks.stage_config import StageConfig
from stacks.storage import DocumentsBucket
from stacks.web import WebApp

# Where Zibal sends a payer back to: the API's own URL, known only once the API exists.
PUBLIC_BASE_URL_ENV = "DOCUCHAT_PUBLIC_BASE_URL"


def stack_name(stage: StageConfig, part: str) -> str:
    return f"DocuChat-{stage.name}-{part}"


class DataStack(Stack):
    """Tables, queues, the documents bucket and secrets: what a redeploy of the service must never touch."""

    def __init__(self, scope: Construct, *, stage: StageConfig, env: Environment) -> None:
        super().__init__(
            scope,
            stack_name(stage, "Data"),
            env=env,
            description=f"DocuChat {stage.name}: tables, queues, documents bucket, secrets",
            termination_protection=stage.retain_data,
        )
        self.tables = Tables(self, "Tables", stage=stage)
        self.queues = Queues(self, "Queues", stage=stage)
        self.documents = DocumentsBucket(
            self, "Documents", stage=stage, notify_queue=self.queues.by_id[DOCUMENTS_BUCKET.notify_queue].queue
        )
        self.secrets = Secrets(self, "Secrets", stage=stage)


class ServiceStack(Stack):
    """The functions, the HTTP API, the web app, the schedules, alarms and dashboard."""

    def __init__(self, scope: Construct, *, stage: StageConfig, env: Environment, data: DataStack) -> None:
        super().__init__(
            scope,
            stack_name(stage, "Service"),
            env=env,
            description=f"DocuChat {stage.name}: functions, HTTP API, web app, schedules, monitoring",
        )
        # Exports keep the Data stack from being deleted while this stack uses it (see the decision record).
        CrossStackReferences.of(self).consume(ReferenceStrength.STRONG)
        self.topics = Topics(self, "Topics", stage=stage)
        self.functions = Functions(
            self,
            "Functions",
            stage=stage,
            tables=data.tables,
            queues=data.queues,
            bucket=data.documents.bucket,
            secrets=data.secrets,
            topics=self.topics,
        )
        subscribe_consumers(data.queues, self.functions.by_id, stage=stage)
        # The web app first: the API's CORS names its address. It may connect to the documents bucket (presigned
        # uploads) by the regional host the presigned URLs name (shared/data/aws.py).
        documents = data.documents.bucket
        self.web = WebApp(self, "Web", stage=stage, upload_origins=["https://" + documents.bucket_regional_domain_name])
        browser_origins = [*stage.cors_allowed_origins, self.web.origin]
        entry_points = self.functions.entry_points
        self.api = ChatApi(self, "Api", stage=stage, handler=entry_points[API_FUNCTION], origins=browser_origins)
        self.streaming = StreamingUrl(
            self, "Streaming", function=entry_points[STREAM_FUNCTION], origins=browser_origins
        )
        self.web.publish(stage=stage, api_url=self.api.base_url, streaming_url=self.streaming.url)
        billing = self.functions.by_id["billing"]
        billing.add_environment(PUBLIC_BASE_URL_ENV, self.api.base_url)
        self.schedules = Schedules(self, "Schedules", stage=stage, functions=self.functions.by_id)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            stage=stage,
            http_api=self.api.http_api,
            functions=self.functions.by_id,
            queues={queue_id: item.queue for queue_id, item in data.queues.by_id.items()},
            dead_letter_queues={
                **{queue_id: item.dead_letter_queue for queue_id, item in data.queues.by_id.items()},
                **{f"{fid}-schedule": queue for fid, queue in self.schedules.dead_letter_queues.items()},
            },
        )
        # Here rather than beside the topic: stacks/monitoring.py belongs to the monitoring work (move it there).
        for topic in filter(None, (self.monitoring.topic, self.monitoring.notices)):
            accept(topic, *ALARM_TOPIC_FINDINGS)


# CloudWatch alarms publish to the topic as the CloudWatch service, which must be allowed to use the topic's key.
# The AWS-managed key (alias/aws/sns) cannot allow it (its policy is AWS's), so an encrypted topic would take the
# alarms and deliver nothing. A customer-managed key whose policy allows CloudWatch costs $1 a month.
ALARM_TOPIC_FINDINGS = (
    *for_reason(
        "Alarms cannot publish to a topic under the AWS-managed key, and a customer key costs $1 a month; the topic "
        "carries alarm names and states only",
        "AwsSolutions-SNS2",
        "CKV_AWS_26",
    ),
    Accepted(
        "AwsSolutions-SNS3",
        "Left to the monitoring work, whose topic it is: requiring TLS takes a topic policy, which replaces SNS's "
        "default one and must be shown to still let CloudWatch's alarms publish",
    ),
)


def add_stage(app: App, stage: StageConfig, account: str | None = None) -> tuple[DataStack, ServiceStack]:
    """Both stacks of `stage`, tagged with it. `account` is used when the stage config names none."""
    env = Environment(account=stage.account or account, region=stage.region)
    data = DataStack(app, stage=stage, env=env)
    service = ServiceStack(app, stage=stage, env=env, data=data)
    for stack in (data, service):
        Tags.of(stack).add("project", "docuchat")
        Tags.of(stack).add("stage", stage.name)
        apply_checks(stack)
    return data, service
