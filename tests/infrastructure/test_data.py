"""Tables, queues and their consumers, the documents bucket and the secrets: what holds DocuChat's state."""

from __future__ import annotations

import pytest

from shared.resources import DOCUMENTS_BUCKET, QUEUES, TABLES, IndexSpec, TableSpec, queue_by_id
from stacks.secrets import OPENAI_KEY_PLACEHOLDER
from tests.infrastructure.synthesized import SynthesizedStage, props

TABLE_IDS = [spec.id for spec in TABLES]
QUEUE_IDS = [spec.id for spec in QUEUES]


def _key_schema(partition: str, sort: str | None) -> list[dict[str, str]]:
    keys = [{"AttributeName": partition, "KeyType": "HASH"}]
    return keys + ([{"AttributeName": sort, "KeyType": "RANGE"}] if sort else [])


def _expected_attributes(spec: TableSpec) -> dict[str, str]:
    attributes = [spec.partition_key, spec.sort_key]
    for index in spec.indexes:
        attributes += [index.partition_key, index.sort_key]
    return {a.name: a.type for a in attributes if a is not None}


def _expected_index(index: IndexSpec) -> dict[str, object]:
    return {
        "IndexName": index.name,
        "KeySchema": _key_schema(index.partition_key.name, index.sort_key.name if index.sort_key else None),
        "Projection": {"ProjectionType": "ALL"},
    }


@pytest.mark.parametrize("table_id", TABLE_IDS)
def test_each_table_matches_its_spec(synthesized: SynthesizedStage, table_id: str) -> None:
    # Given
    spec = next(t for t in TABLES if t.id == table_id)
    # When
    _, table = synthesized.table(table_id)
    properties = props(table)
    # Then: keys, indexes and TTL exactly as shared.resources says
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    sort = spec.sort_key.name if spec.sort_key else None
    assert properties["KeySchema"] == _key_schema(spec.partition_key.name, sort)
    defined = {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]}
    assert defined == _expected_attributes(spec)
    assert properties.get("GlobalSecondaryIndexes", []) == [_expected_index(i) for i in spec.indexes]
    if spec.ttl_attribute:
        assert properties["TimeToLiveSpecification"] == {"AttributeName": spec.ttl_attribute, "Enabled": True}
    else:
        assert "TimeToLiveSpecification" not in properties
    assert properties["SSESpecification"] == {"SSEEnabled": True}


@pytest.mark.parametrize("table_id", TABLE_IDS)
def test_tables_are_recoverable_and_kept_where_the_stage_keeps_data(
    synthesized: SynthesizedStage, table_id: str
) -> None:
    # Given
    stage = synthesized.stage
    # When
    _, table = synthesized.table(table_id)
    # Then
    pitr = props(table)["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
    assert pitr is stage.point_in_time_recovery
    assert table["DeletionPolicy"] == ("Retain" if stage.retain_data else "Delete")
    assert props(table).get("DeletionProtectionEnabled", False) is stage.retain_data


def test_prod_keeps_its_data_and_dev_does_not(synthesized: SynthesizedStage) -> None:
    # Then: the stage settings the two tests above rely on are what cdk.json promises
    expected = {"dev": (False, False), "staging": (False, True), "prod": (True, True)}[synthesized.stage.name]
    assert (synthesized.stage.retain_data, synthesized.stage.point_in_time_recovery) == expected
    assert synthesized.data_termination_protection is synthesized.stage.retain_data


@pytest.mark.parametrize("queue_id", QUEUE_IDS)
def test_each_queue_has_a_dead_letter_queue_and_outlasts_its_consumer(
    synthesized: SynthesizedStage, queue_id: str
) -> None:
    # Given
    spec = queue_by_id(queue_id)
    stage_name = synthesized.stage.name
    _, consumer = synthesized.function(spec.consumer)
    # When
    _, queue = synthesized.queue(spec.physical_name(stage_name))
    dlq_id, _ = synthesized.queue(spec.dlq_physical_name(stage_name))
    # Then
    redrive = props(queue)["RedrivePolicy"]
    assert synthesized.target(redrive["deadLetterTargetArn"]) == dlq_id
    assert redrive["maxReceiveCount"] == spec.max_receive_count
    assert props(queue)["VisibilityTimeout"] >= 6 * props(consumer)["Timeout"]


@pytest.mark.parametrize("queue_id", QUEUE_IDS)
def test_each_queue_feeds_its_consumer_with_partial_batch_failures(
    synthesized: SynthesizedStage, queue_id: str
) -> None:
    # Given
    spec = queue_by_id(queue_id)
    queue_id_in_template, _ = synthesized.queue(spec.physical_name(synthesized.stage.name))
    consumer_id, _ = synthesized.function(spec.consumer)
    # When
    mappings = [
        props(m)
        for m in synthesized.of_type("AWS::Lambda::EventSourceMapping").values()
        if synthesized.targets(props(m)["EventSourceArn"]) == {queue_id_in_template}
    ]
    # Then
    assert len(mappings) == 1
    mapping = mappings[0]
    assert synthesized.target(mapping["FunctionName"]) == consumer_id
    assert mapping["BatchSize"] == spec.batch_size
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 0 < mapping["MaximumBatchingWindowInSeconds"] <= 5


def test_every_queue_refuses_unencrypted_transport(synthesized: SynthesizedStage) -> None:
    # Given
    queue_ids = set(synthesized.of_type("AWS::SQS::Queue"))
    # When
    guarded = set()
    for policy in synthesized.of_type("AWS::SQS::QueuePolicy").values():
        for statement in props(policy)["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                guarded |= synthesized.targets(statement["Resource"])
    # Then
    assert guarded == queue_ids
    assert all(props(q)["SqsManagedSseEnabled"] for q in synthesized.of_type("AWS::SQS::Queue").values())


def test_the_documents_bucket_is_private_and_tls_only(synthesized: SynthesizedStage) -> None:
    # When
    bucket_id, bucket = synthesized.documents_bucket()
    properties = props(bucket)
    # Then
    assert properties["BucketName"] == {
        "Fn::Join": ["", [f"docuchat-{synthesized.stage.name}-{DOCUMENTS_BUCKET.id}-", {"Ref": "AWS::AccountId"}]]
    }
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    [policy] = [
        p
        for p in synthesized.of_type("AWS::S3::BucketPolicy").values()
        if synthesized.target(props(p)["Bucket"]) == bucket_id
    ]
    assert any(
        s["Effect"] == "Deny" and s.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
        for s in props(policy)["PolicyDocument"]["Statement"]
    )
    assert bucket["DeletionPolicy"] == ("Retain" if synthesized.stage.retain_data else "Delete")


def test_new_documents_are_announced_to_the_ingestion_queue(synthesized: SynthesizedStage) -> None:
    # Given
    notify_queue = queue_by_id(DOCUMENTS_BUCKET.notify_queue)
    queue_id, _ = synthesized.queue(notify_queue.physical_name(synthesized.stage.name))
    bucket_id, _ = synthesized.documents_bucket()
    # When
    _, notifications = synthesized.one_of_type("Custom::S3BucketNotifications")
    # Then
    assert synthesized.target(props(notifications)["BucketName"]) == bucket_id
    configurations = props(notifications)["NotificationConfiguration"]["QueueConfigurations"]
    assert len(configurations) == 1
    assert configurations[0]["Events"] == ["s3:ObjectCreated:*"]
    assert configurations[0]["Filter"] == {
        "Key": {"FilterRules": [{"Name": "prefix", "Value": DOCUMENTS_BUCKET.notify_prefix}]}
    }
    assert synthesized.target(configurations[0]["QueueArn"]) == queue_id


def test_the_three_secrets_exist_and_prod_keeps_them(synthesized: SynthesizedStage) -> None:
    # When
    secrets = {
        name: synthesized.resources[synthesized.with_id_prefix("AWS::SecretsManager::Secret", f"Secrets{name}")]
        for name in ("OpenAiApiKey", "AdminApiKey", "ZibalMerchant")
    }
    # Then
    assert len(synthesized.of_type("AWS::SecretsManager::Secret")) == 3
    assert props(secrets["OpenAiApiKey"])["SecretString"] == OPENAI_KEY_PLACEHOLDER
    assert "GenerateSecretString" in props(secrets["AdminApiKey"])
    retained = "Retain" if synthesized.stage.retain_data else "Delete"
    assert {s["DeletionPolicy"] for s in secrets.values()} == {retained}
    outputs = str(synthesized.data_json["Outputs"])
    assert "put-secret-value" in outputs


def test_the_data_stack_never_refers_to_the_service_stack(synthesized: SynthesizedStage) -> None:
    # Then: references only point from Service to Data, so the two stacks cannot form a cycle
    assert "Fn::ImportValue" not in str(synthesized.data_json)
    assert synthesized.data_stack_name == f"DocuChat-{synthesized.stage.name}-Data"
    assert synthesized.service_stack_name == f"DocuChat-{synthesized.stage.name}-Service"
