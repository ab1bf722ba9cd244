"""Create DocuChat's tables, queues, bucket and sender identity in emulated AWS from shared.resources.

The same specs drive the CDK stacks, so local and deployed resources cannot drift apart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from shared import resources
from shared.resources import TableSpec
from stacks.stage_config import StageConfig

LOCAL_ACCOUNT = "123456789012"  # moto's default account


def table_definition(spec: TableSpec, name: str) -> dict[str, Any]:
    """CreateTable arguments for a spec (on-demand, like every deployed table)."""
    key_attributes = [spec.partition_key, *([spec.sort_key] if spec.sort_key else [])]
    for index in spec.indexes:
        key_attributes += [index.partition_key, *([index.sort_key] if index.sort_key else [])]
    attributes = {a.name: a.type for a in key_attributes}

    def schema(partition: resources.Attribute, sort: resources.Attribute | None) -> list[dict[str, str]]:
        return [{"AttributeName": partition.name, "KeyType": "HASH"}] + (
            [{"AttributeName": sort.name, "KeyType": "RANGE"}] if sort else []
        )

    definition: dict[str, Any] = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, t in attributes.items()],
        "KeySchema": schema(spec.partition_key, spec.sort_key),
    }
    if spec.indexes:
        definition["GlobalSecondaryIndexes"] = [
            {
                "IndexName": i.name,
                "KeySchema": schema(i.partition_key, i.sort_key),
                "Projection": {"ProjectionType": "ALL"},
            }
            for i in spec.indexes
        ]
    return definition


def create_tables(dynamodb: Any, stage: str) -> dict[str, str]:
    """Every table of the stage; a table kept from an earlier run (DOCUCHAT_DATA_DIR) gets the indexes and TTL
    that the specs have gained since."""
    env = {}
    for spec in resources.TABLES:
        name = spec.physical_name(stage)
        definition = table_definition(spec, name)
        try:
            dynamodb.create_table(**definition)
        except ClientError as error:
            if error.response["Error"]["Code"] != "ResourceInUseException":
                raise
            _add_missing_indexes(dynamodb, definition)
        if spec.ttl_attribute:
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                dynamodb.update_time_to_live(
                    TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute}
                )
        env[spec.env_var] = name
    return env


def _add_missing_indexes(dynamodb: Any, definition: dict[str, Any]) -> None:
    name = definition["TableName"]
    existing = {
        i["IndexName"] for i in dynamodb.describe_table(TableName=name)["Table"].get("GlobalSecondaryIndexes", [])
    }
    for index in definition.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] not in existing:
            dynamodb.update_table(
                TableName=name,
                AttributeDefinitions=definition["AttributeDefinitions"],
                GlobalSecondaryIndexUpdates=[{"Create": index}],
            )


def create_queues(sqs: Any, config: StageConfig) -> dict[str, str]:
    """Each queue with its DLQ; visibility is 6x its consumer's timeout, as deployed."""
    env = {}
    for spec in resources.QUEUES:
        dlq_url = sqs.create_queue(QueueName=spec.dlq_physical_name(config.name))["QueueUrl"]
        dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        visibility = 6 * config.functions[spec.consumer].timeout_seconds
        url = sqs.create_queue(
            QueueName=spec.physical_name(config.name),
            Attributes={
                "VisibilityTimeout": str(visibility),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count}
                ),
            },
        )["QueueUrl"]
        env[spec.env_var] = url
    return env


def create_bucket(s3: Any, stage: str, browser_origins: Sequence[str] = ()) -> dict[str, str]:
    """The documents bucket; `browser_origins` may PUT presigned uploads to it from a page (the web app)."""
    spec = resources.DOCUMENTS_BUCKET
    name = spec.physical_name(stage, LOCAL_ACCOUNT)
    try:
        s3.create_bucket(Bucket=name)
    except ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    if browser_origins:
        rule = {
            "AllowedOrigins": list(browser_origins),
            "AllowedMethods": list(resources.UPLOAD_CORS_METHODS),
            "AllowedHeaders": list(resources.UPLOAD_CORS_HEADERS),
            "MaxAgeSeconds": resources.UPLOAD_CORS_MAX_AGE_SECONDS,
        }
        s3.put_bucket_cors(Bucket=name, CORSConfiguration={"CORSRules": [rule]})
    return {spec.env_var: name}


def notify_on_upload(s3: Any, sqs: Any, bucket: str, queue_urls: dict[str, str]) -> None:
    """S3 object-created events for the sources prefix go to the ingestion queue."""
    spec = resources.DOCUMENTS_BUCKET
    queue_url = queue_urls[resources.queue_by_id(spec.notify_queue).env_var]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    s3.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": spec.notify_prefix}]}},
                }
            ]
        },
    )


def create_all(
    clients: Any,
    config: StageConfig,
    sender: str,
    before_notifications: Callable[[dict[str, str]], None] | None = None,
    browser_origins: Sequence[str] = (),
) -> dict[str, str]:
    """Create everything; returns the environment variables that point the functions at it.

    `before_notifications` runs once the resources exist but before uploads notify ingestion: restoring
    saved state there does not re-ingest every document.
    """
    env = create_tables(clients.dynamodb, config.name)
    queues = create_queues(clients.sqs, config)
    env |= queues
    env |= create_bucket(clients.s3, config.name, browser_origins)
    if before_notifications:
        before_notifications(env)
    notify_on_upload(clients.s3, clients.sqs, env[resources.DOCUMENTS_BUCKET.env_var], queues)
    clients.ses.verify_email_identity(EmailAddress=sender)
    for topic in resources.TOPICS:
        env[topic.env_var] = clients.sns.create_topic(Name=topic.physical_name(config.name))["TopicArn"]
    return env
