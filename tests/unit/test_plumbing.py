"""Unit tests of settings, resource specs, stage config, local event shapes and error mapping."""

from __future__ import annotations

import inspect
import os
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from functions.chat.errors import status_of
from local.lambda_runtime import http_api_event, sqs_event
from local.workers import next_run
from shared import errors, resources
from shared.settings import Settings
from stacks.stage_config import UnknownStageError, load_stage


def test_settings_name_resources_after_the_stage_like_cdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUCHAT_STAGE", "staging")
    monkeypatch.setenv("DOCUCHAT_PRICES", '{"default": 20, "gpt-4o": 60}')
    settings = Settings()
    assert settings.tenants_table == resources.TENANTS.physical_name("staging") == "docuchat-staging-tenants"
    assert settings.prices == {"default": 20, "gpt-4o": 60}
    assert not settings.llm_enabled


def test_settings_refuse_a_price_table_without_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCUCHAT_PRICES", '{"gpt-4o": 60}')
    with pytest.raises(ValidationError):
        Settings()


def test_an_openai_key_switches_the_llm_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert Settings().llm_enabled


def test_every_stage_in_cdk_json_is_valid_and_prod_keeps_its_data() -> None:
    stages = {name: load_stage(name) for name in ("dev", "staging", "prod")}
    assert stages["prod"].retain_data and stages["prod"].point_in_time_recovery
    assert not stages["dev"].retain_data
    assert all(s.prices_tomans_per_1k_tokens["default"] == 20 for s in stages.values())
    assert stages["dev"].billing_cron == "cron(30 0 * * ? *)"
    with pytest.raises(UnknownStageError):
        load_stage("qa")


def test_the_resource_specs_hang_together() -> None:
    table_ids = {t.id for t in resources.TABLES}
    for spec in resources.FUNCTIONS.values():
        assert set(spec.reads) | set(spec.writes) <= table_ids, spec.id
        assert all(resources.queue_by_id(q) for q in spec.sends_to)
        assert set(spec.invokes) <= set(resources.FUNCTIONS)
    for queue in resources.QUEUES:
        assert queue.consumer in resources.FUNCTIONS
    assert resources.queue_by_id(resources.DOCUMENTS_BUCKET.notify_queue).consumer == "ingestion"
    # Invariant 4: every tenant table is keyed by the tenant id first.
    assert all(t.partition_key.name == "pk" for t in resources.TABLES)


def test_the_nightly_schedule_fires_at_the_next_local_half_past_midnight() -> None:
    before = datetime(2026, 11, 20, 20, 0, tzinfo=UTC)  # 23:30 in Tehran
    fire = next_run(before, 0, 30, "Asia/Tehran")
    assert (fire.day, fire.hour, fire.minute) == (21, 0, 30)
    assert next_run(fire, 0, 30, "Asia/Tehran").day == 22


def test_local_sqs_events_have_lambdas_shape() -> None:
    event = sqs_event(
        [{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {"ApproximateReceiveCount": "2"}}],
        "arn:aws:sqs:us-east-1:123456789012:q",
    )
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs" and record["messageId"] == "m1"
    assert record["attributes"]["ApproximateReceiveCount"] == "2" and len(record["md5OfBody"]) == 32


def test_local_http_events_are_payload_2() -> None:
    event = http_api_event("POST", "/v1/chat", '{"a": 1}', {"Authorization": "Bearer x"}, {"q": "1"})
    assert event["version"] == "2.0" and event["requestContext"]["http"]["method"] == "POST"
    assert event["headers"]["authorization"] == "Bearer x" and event["rawQueryString"] == "q=1"


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.InvalidInput("x"), 400),
        (errors.PayloadTooLarge("x"), 413),
        (errors.Unauthorized("x"), 401),
        (errors.Forbidden("x"), 403),
        (errors.NotFound("x"), 404),
        (errors.Conflict("x"), 409),
        (errors.UpstreamFailed("x"), 502),
    ],
)
def test_each_domain_error_maps_to_one_status(error: errors.DocuChatError, status: int) -> None:
    assert status_of(error) == status


def test_make_dev_takes_the_model_chain_from_the_environment_over_the_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    from local.runtime import LocalOptions, LocalSystem

    # Given a developer's environment naming its own models (and a copy of the environment to write to)
    environment = {**os.environ, "LLM_MODEL": "my-model", "LLM_FALLBACK_MODEL": "backup-a,backup-b"}
    environment.pop("LLM_CACHE_TTL", None)
    monkeypatch.setattr(os, "environ", environment)
    system = LocalSystem(LocalOptions(zibal_base_url="http://127.0.0.1:9"))

    # When the local system sets the functions' environment from the stage
    system._set_environment("http://127.0.0.1:1", "http://127.0.0.1:2")

    # Then the developer's choices stay, the stage fills in the rest, and the stage is the local one
    assert environment["LLM_MODEL"] == "my-model" and environment["LLM_FALLBACK_MODEL"] == "backup-a,backup-b"
    assert environment["LLM_CACHE_TTL"] == str(system.config.llm_cache_ttl_seconds)
    assert environment["DOCUCHAT_STAGE"] == "local"
    assert Settings().llm_chain == ["my-model", "backup-a", "backup-b"]


def test_the_dependency_errors_that_mean_try_again_are_told_apart() -> None:
    from botocore.exceptions import ClientError, EndpointConnectionError

    from shared.data.aws import is_unavailable

    def client_error(code: str, reasons: list[str] | None = None) -> ClientError:
        response: dict[str, object] = {"Error": {"Code": code, "Message": code}}
        if reasons:
            response["CancellationReasons"] = [{"Code": reason} for reason in reasons]
        return ClientError(response, "Op")  # type: ignore[arg-type]

    assert is_unavailable(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    assert is_unavailable(client_error("ProvisionedThroughputExceededException"))
    assert is_unavailable(client_error("TransactionCanceledException", ["None", "TransactionConflict"]))
    assert not is_unavailable(client_error("TransactionCanceledException", ["ConditionalCheckFailed"]))
    assert not is_unavailable(client_error("ValidationException"))
    assert not is_unavailable(ValueError("a bug"))


def test_a_billing_run_longer_than_the_request_may_wait_is_a_503_and_is_never_invoked_twice() -> None:
    from botocore.exceptions import ReadTimeoutError

    from shared.data.messaging import LambdaBillingRunner
    from shared.errors import ServiceUnavailable

    # Given a billing function that is still running when the read timeout ends
    calls = []

    class SlowLambda:
        def invoke(self, **kwargs: object) -> None:
            calls.append(kwargs)
            raise ReadTimeoutError(endpoint_url="https://lambda.example")

    # When / Then: a clear 503, and one invocation only (a retry would start a second run)
    with pytest.raises(ServiceUnavailable, match="billing/runs"):
        LambdaBillingRunner(SlowLambda(), "docuchat-dev-billing").run({"date": "2026-12-01"})
    assert len(calls) == 1


def test_the_billing_invoke_is_tried_once_and_waited_for_just_under_api_gateways_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.data.aws import AwsClients

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    config = AwsClients(Settings()).lambda_.meta.config
    assert config.retries["total_max_attempts"] == 1 and config.read_timeout < 29


def test_the_chat_routes_dependencies_without_io_run_on_the_event_loop() -> None:
    # FastAPI runs a plain `def` dependency on a worker thread: a hop each, on every request.
    from functions.chat import deps
    from functions.chat.routes.chat import chat
    from shared.models import Scope

    for call in (deps.container, deps.request_id, deps.page_request, deps.scoped(Scope.CHAT), chat):
        assert inspect.iscoroutinefunction(call), call
