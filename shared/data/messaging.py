"""Outbound messages: usage events to SQS, invoice emails through SES, secrets, invoking billing."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ReadTimeoutError

from shared.errors import ServiceUnavailable
from shared.models import UsageEvent

SQS_BATCH = 10  # the most SendMessageBatch takes


class UsageQueue:
    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def send_all(self, events: Sequence[UsageEvent]) -> list[UsageEvent]:
        """Send events in batches of ten (one SQS request each); returns those SQS refused in a batch.

        Raises botocore's errors once its own retries are spent.
        """
        refused: list[UsageEvent] = []
        for start in range(0, len(events), SQS_BATCH):
            batch = events[start : start + SQS_BATCH]
            response = self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[
                    {
                        "Id": str(number),
                        "MessageBody": event.model_dump_json(),
                        "MessageAttributes": {"kind": {"DataType": "String", "StringValue": event.kind.value}},
                    }
                    for number, event in enumerate(batch)
                ],
            )
            refused += [batch[int(failure["Id"])] for failure in response.get("Failed", [])]
        return refused


class IngestionQueue:
    """The ingestion function's own queue: where it hands itself the rest of a large document."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def send(self, body: dict[str, Any]) -> None:
        self._sqs.send_message(QueueUrl=self._queue_url, MessageBody=json.dumps(body))


class Mailer:
    def __init__(self, ses: Any, sender: str) -> None:
        self._ses = ses
        self._sender = sender

    def send(self, to: str, subject: str, body: str) -> str:
        response = self._ses.send_email(
            Source=self._sender,
            Destination={"ToAddresses": [to]},
            Message={
                "Subject": {"Data": subject, "Charset": "UTF-8"},
                "Body": {"Text": {"Data": body, "Charset": "UTF-8"}},
            },
        )
        return str(response["MessageId"])


class SecretReader:
    def __init__(self, secrets: Any) -> None:
        self._secrets = secrets

    def read(self, secret_id: str) -> str:
        return str(self._secrets.get_secret_value(SecretId=secret_id)["SecretString"])


class LambdaBillingRunner:
    """Runs the billing function synchronously (the admin API's on-demand run)."""

    def __init__(self, lambda_client: Any, function_name: str) -> None:
        self._lambda = lambda_client
        self._function_name = function_name

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        try:
            response = self._lambda.invoke(
                FunctionName=self._function_name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
            )
        except ReadTimeoutError as error:
            raise ServiceUnavailable(
                "the billing run takes longer than this request may wait; it goes on: see GET /v1/admin/billing/runs"
            ) from error
        result: dict[str, Any] = json.loads(response["Payload"].read() or b"{}")
        if response.get("FunctionError"):
            raise RuntimeError(f"billing function failed: {result.get('errorMessage', result)}")
        return result


class TopicPublisher:
    """An SNS topic; a message is JSON. Its client is asked for on the first publish: most of the chat function's
    cold starts escalate nothing, and building a client costs a few milliseconds."""

    def __init__(self, sns: Callable[[], Any], topic_arn: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn

    def publish(self, subject: str, message: dict[str, object]) -> None:
        self._sns().publish(TopicArn=self._topic_arn, Subject=subject[:100], Message=json.dumps(message, default=str))
