"""The functions: runtime and defaults, their own roles, their environment and least-privilege grants."""

from __future__ import annotations

import pytest

from shared.resources import DOCUMENTS_BUCKET, FUNCTIONS, FunctionSpec, queue_by_id, table_by_id, topic_by_id
from stacks.compute import invoke_env_var
from stacks.docuchat import PUBLIC_BASE_URL_ENV
from stacks.stage_config import INDEX_BYTES_PER_ROW, INDEX_FUNCTIONS, INDEX_RESERVE_MB, index_cache_rows
from tests.infrastructure.synthesized import SynthesizedStage, actions_of, props

FUNCTION_IDS = sorted(FUNCTIONS)
TABLE_WRITE_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
S3_WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject*"}
# Written out here rather than imported, so a change to who reads which secret has to change this test too.
SECRETS_BY_FUNCTION = {
    "chat": ("DOCUCHAT_OPENAI_SECRET_ARN", "DOCUCHAT_ADMIN_KEY_SECRET_ARN", "DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"),
    "stream": ("DOCUCHAT_OPENAI_SECRET_ARN", "DOCUCHAT_ADMIN_KEY_SECRET_ARN", "DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"),
    "billing": ("DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN",),
    "ingestion": ("DOCUCHAT_OPENAI_SECRET_ARN",),  # OpenAI's embeddings
}
# Likewise the tables each function's code touches: (read only, read and write). The grants follow the specs; this
# says what the handlers need, so a spec edit that would break a money path (outbox, callback, markers) fails here.
TABLE_ACCESS = {
    # usage: outbox, rate counters, budgets; audit: admin actions; conversations: also tickets, webhook log.
    "chat": (set(), {"tenants", "documents", "conversations", "usage", "billing", "audit"}),
    "stream": (set(), {"tenants", "documents", "conversations", "usage", "billing", "audit"}),  # the same app
    # tenants: whose budget; usage: the outbox of embedding usage events, and the budgets
    "ingestion": ({"tenants"}, {"documents", "usage"}),
    "metering": ({"tenants"}, {"usage"}),
    "billing": ({"tenants"}, {"usage", "billing"}),
    "webhooks": ({"tenants"}, {"conversations"}),  # the webhook config; the delivery log
}
# Functions a schedule invokes: each may report a run that kept failing to its schedule's dead-letter queue.
SCHEDULED_FUNCTIONS = {"billing", "metering", "ingestion"}


def test_there_are_exactly_the_functions_of_the_specs(synthesized: SynthesizedStage) -> None:
    # Then: the DocuChat functions are those of shared.resources, each with its spec's handler
    ours = {
        props(f)["FunctionName"]: props(f)["Handler"]
        for f in synthesized.of_type("AWS::Lambda::Function").values()
        if str(props(f).get("FunctionName", "")).startswith("docuchat-")
    }
    assert ours == {f"docuchat-{synthesized.stage.name}-{spec.id}": spec.handler for spec in FUNCTIONS.values()}


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_function_gets_the_shared_lambda_defaults(synthesized: SynthesizedStage, function_id: str) -> None:
    # Given
    stage = synthesized.stage
    layer_id, _ = synthesized.dependency_layer()
    # When
    _, function = synthesized.function(function_id)
    properties = props(function)
    # Then
    assert properties["Runtime"] == "python3.13"
    assert properties["Architectures"] == ["arm64"]
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["LoggingConfig"]["LogFormat"] == "JSON"
    assert synthesized.targets(properties["Layers"]) == {layer_id}
    assert properties["MemorySize"] == stage.functions[function_id].memory_mb
    assert properties["Timeout"] == stage.functions[function_id].timeout_seconds
    assert properties["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"] == function_id
    log_group = synthesized.resources[synthesized.target(properties["LoggingConfig"]["LogGroup"])]
    assert props(log_group)["RetentionInDays"] == stage.log_retention_days


def test_the_layer_is_for_python_3_13_on_arm64(synthesized: SynthesizedStage) -> None:
    _, layer = synthesized.dependency_layer()
    assert props(layer)["CompatibleRuntimes"] == ["python3.13"]
    assert props(layer)["CompatibleArchitectures"] == ["arm64"]


def test_each_function_has_its_own_role(synthesized: SynthesizedStage) -> None:
    # When
    roles = {fid: synthesized.target(props(synthesized.function(fid)[1])["Role"]) for fid in FUNCTION_IDS}
    # Then: a role each, each assumable by Lambda
    assert len(set(roles.values())) == len(FUNCTION_IDS), roles
    for role_id in roles.values():
        trust = props(synthesized.resources[role_id])["AssumeRolePolicyDocument"]["Statement"]
        assert [s["Principal"] for s in trust] == [{"Service": "lambda.amazonaws.com"}]


def _expected_environment(spec: FunctionSpec, synthesized: SynthesizedStage) -> set[str]:
    names = {*synthesized.stage.runtime_environment(), "POWERTOOLS_SERVICE_NAME"}
    names |= {table_by_id(t).env_var for t in (*spec.reads, *spec.writes)}
    names |= {queue_by_id(q).env_var for q in spec.sends_to}
    names |= {DOCUMENTS_BUCKET.env_var} if spec.bucket_access != "none" else set()
    names |= {invoke_env_var(target) for target in spec.invokes}
    names |= set(SECRETS_BY_FUNCTION.get(spec.id, ()))
    names |= {PUBLIC_BASE_URL_ENV} if spec.id == "billing" else set()
    names |= {"AWS_LAMBDA_EXEC_WRAPPER"} if spec.exec_wrapper else set()
    names |= {topic_by_id(topic).env_var for topic in spec.publishes}
    names |= {"DOCUCHAT_INDEX_CACHE_ROWS"} if spec.id in INDEX_FUNCTIONS else set()
    return names


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_function_gets_exactly_the_environment_its_spec_implies(
    synthesized: SynthesizedStage, function_id: str
) -> None:
    # Given
    spec = FUNCTIONS[function_id]
    # When
    variables = props(synthesized.function(function_id)[1])["Environment"]["Variables"]
    # Then: the names, and every value that points at a resource points at the right one
    assert set(variables) == _expected_environment(spec, synthesized)
    for name, value in synthesized.stage.runtime_environment().items():
        assert variables[name] == value
    for table_id in (*spec.reads, *spec.writes):
        assert synthesized.target(variables[table_by_id(table_id).env_var]) == synthesized.table(table_id)[0]
    for queue_id in spec.sends_to:
        spec_queue = queue_by_id(queue_id)
        expected_queue = synthesized.queue(spec_queue.physical_name(synthesized.stage.name))[0]
        assert synthesized.target(variables[spec_queue.env_var]) == expected_queue
    for target_id in spec.invokes:
        assert synthesized.target(variables[invoke_env_var(target_id)]) == synthesized.function(target_id)[0]


def test_chat_and_billing_get_their_secrets_and_billing_the_public_url(synthesized: SynthesizedStage) -> None:
    # Given
    def secret(name: str) -> str:
        return synthesized.with_id_prefix("AWS::SecretsManager::Secret", f"Secrets{name}")

    chat = props(synthesized.function("chat")[1])["Environment"]["Variables"]
    billing = props(synthesized.function("billing")[1])["Environment"]["Variables"]
    api_id, _ = synthesized.one_of_type("AWS::ApiGatewayV2::Api")
    # Then
    assert synthesized.target(chat["DOCUCHAT_OPENAI_SECRET_ARN"]) == secret("OpenAiApiKey")
    assert synthesized.target(chat["DOCUCHAT_ADMIN_KEY_SECRET_ARN"]) == secret("AdminApiKey")
    assert synthesized.target(billing["DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"]) == secret("ZibalMerchant")
    assert billing[PUBLIC_BASE_URL_ENV] == {"Fn::GetAtt": [api_id, "ApiEndpoint"]}
    # Then: the payment callback (in chat) verifies with the same merchant at the same gateway as billing
    assert synthesized.target(chat["DOCUCHAT_ZIBAL_MERCHANT_SECRET_ARN"]) == secret("ZibalMerchant")
    for variables in (chat, billing):
        assert variables["DOCUCHAT_ZIBAL_BASE_URL"] == synthesized.stage.zibal_base_url


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_function_may_use_the_tables_its_code_needs(synthesized: SynthesizedStage, function_id: str) -> None:
    # Given
    read_only, read_write = TABLE_ACCESS[function_id]
    role_id = synthesized.target(props(synthesized.function(function_id)[1])["Role"])
    # When
    granted = synthesized.grants_of_role(role_id)
    # Then
    assert granted.get("dynamodb:Query", set()) == {synthesized.table(t)[0] for t in read_only | read_write}
    assert granted.get("dynamodb:UpdateItem", set()) == {synthesized.table(t)[0] for t in read_write}


@pytest.mark.parametrize("function_id", FUNCTION_IDS)
def test_each_role_allows_only_what_the_spec_says(synthesized: SynthesizedStage, function_id: str) -> None:
    # Given
    spec = FUNCTIONS[function_id]
    stage_name = synthesized.stage.name
    role_id = synthesized.target(props(synthesized.function(function_id)[1])["Role"])
    # When
    granted = synthesized.grants_of_role(role_id)

    # Then: no admin-style wildcards
    assert not [a for a in granted if a == "*" or a.endswith(":*")], granted
    # Then: tables, read-only where the spec only reads
    tables = {t: synthesized.table(t)[0] for t in (*spec.reads, *spec.writes)}
    assert granted.get("dynamodb:GetItem", set()) == set(tables.values())
    for action in TABLE_WRITE_ACTIONS:
        assert granted.get(action, set()) == {tables[t] for t in spec.writes}, action
    # Then: queues it sends to (a scheduled function also reports failed runs to its schedule's DLQ)
    send_targets = {synthesized.queue(queue_by_id(q).physical_name(stage_name))[0] for q in spec.sends_to}
    if function_id in SCHEDULED_FUNCTIONS:
        send_targets.add(synthesized.queue(f"docuchat-{stage_name}-{function_id}-schedule-dlq")[0])
    assert granted.get("sqs:SendMessage", set()) == send_targets
    # Then: the documents bucket (the web app's is no function's)
    bucket_id, _ = synthesized.documents_bucket()
    assert granted.get("s3:GetObject*", set()) == ({bucket_id} if spec.bucket_access != "none" else set())
    for action in S3_WRITE_ACTIONS:
        assert granted.get(action, set()) == ({bucket_id} if spec.bucket_access == "read_write" else set()), action
    # Then: exactly its secrets, email only for the sender, invoke only what it calls
    secret_ids = {
        synthesized.target(props(synthesized.function(function_id)[1])["Environment"]["Variables"][e])
        for e in SECRETS_BY_FUNCTION.get(function_id, ())
    }
    assert granted.get("secretsmanager:GetSecretValue", set()) == secret_ids
    assert ("ses:SendEmail" in granted) == spec.sends_email
    assert granted.get("lambda:InvokeFunction", set()) == {synthesized.function(t)[0] for t in spec.invokes}


def test_sending_email_is_limited_to_the_stage_sender(synthesized: SynthesizedStage) -> None:
    role_id = synthesized.target(props(synthesized.function("billing")[1])["Role"])
    ses = [s for s in synthesized.policy_statements_of_role(role_id) if "ses:SendEmail" in actions_of(s)]
    assert [s["Condition"] for s in ses] == [{"StringEquals": {"ses:FromAddress": synthesized.stage.mail_sender}}]


def test_the_stream_function_runs_its_own_runtime_loop_from_the_bundle(synthesized: SynthesizedStage) -> None:
    from stacks.function_bundle import function_code_dir

    variables = props(synthesized.function("stream")[1])["Environment"]["Variables"]
    wrapper = variables["AWS_LAMBDA_EXEC_WRAPPER"]
    assert wrapper == "/var/task/functions/stream/bootstrap"
    bundled = function_code_dir() / wrapper.removeprefix("/var/task/")
    assert bundled.is_file() and bundled.stat().st_mode & 0o111, "the wrapper must be in the bundle, executable"
    assert "functions.stream.runtime" in bundled.read_text()


@pytest.mark.parametrize("function_id", ["chat", "stream"])
def test_chat_may_publish_escalations_to_their_topic_and_nothing_else_may(
    synthesized: SynthesizedStage, function_id: str
) -> None:
    topic_id = synthesized.with_id_prefix("AWS::SNS::Topic", "TopicsEscalations")
    variables = props(synthesized.function(function_id)[1])["Environment"]["Variables"]
    assert synthesized.target(variables["DOCUCHAT_ESCALATIONS_TOPIC_ARN"]) == topic_id
    for other in FUNCTION_IDS:
        role_id = synthesized.target(props(synthesized.function(other)[1])["Role"])
        published = synthesized.grants_of_role(role_id).get("sns:Publish", set())
        assert (topic_id in published) == (other in ("chat", "stream")), other


@pytest.mark.parametrize("function_id", ["chat", "stream"])
def test_the_functions_that_answer_hold_a_million_chunk_tenant_and_know_their_index_limit(
    synthesized: SynthesizedStage, function_id: str
) -> None:
    # The chat functions' memory is sized for a tenant of 1M chunks (docs/decisions/0011), and tells them how
    # many rows of vector indexes they may hold; a larger tenant is refused rather than run them out of memory.
    _, function = synthesized.function(function_id)
    properties = props(function)
    rows = int(properties["Environment"]["Variables"]["DOCUCHAT_INDEX_CACHE_ROWS"])
    assert rows == index_cache_rows(properties["MemorySize"]) and rows >= 1_000_000
    assert (properties["MemorySize"] - INDEX_RESERVE_MB) * 2**20 >= rows * INDEX_BYTES_PER_ROW
