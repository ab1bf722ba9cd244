"""Emulated AWS for tests: one moto server per session, reset and provisioned per test."""

from __future__ import annotations

import logging
import urllib.request
from typing import Any

from moto.server import ThreadedMotoServer

from local.bootstrap import create_all
from shared.data.aws import AwsClients
from shared.models import Limits
from shared.settings import Settings
from stacks.stage_config import StageConfig, load_stage

TEST_STAGE = "test"
SENDER = "billing@docuchat.test"


# moto's server logs every request at INFO; that drowns the logs a failing test shows.
logging.getLogger("werkzeug").setLevel(logging.WARNING)


class MotoAws:
    def __init__(self) -> None:
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)

    def start(self) -> MotoAws:
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"
        return self

    def stop(self) -> None:
        self._server.stop()

    def reset(self) -> None:
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    def provision(
        self, dynamodb_endpoint_url: str | None = None, stage: str = TEST_STAGE
    ) -> tuple[StageConfig, dict[str, str]]:
        """Fresh resources for a stage; returns its config and the functions' environment.

        moto is reset between tests; DynamoDB Local is not, so tests using it pass a stage of their own.
        """
        # No default limits: a test that is about limits sets its tenant's own (most tests send many requests in
        # one frozen minute).
        config = load_stage("dev").model_copy(update={"name": stage, "mail_sender": SENDER, "default_limits": Limits()})
        settings = Settings(
            stage=stage, aws_endpoint_url=self.endpoint_url, dynamodb_endpoint_url=dynamodb_endpoint_url
        )
        env = create_all(AwsClients(settings), config, SENDER)
        return config, env


def sent_emails() -> list[Any]:
    """Messages moto's SES accepted (the test process hosts the moto server, so its backend is here)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    return list(ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages)


def published(topic_arn: str) -> list[dict[str, Any]]:
    """Messages moto's SNS took for a topic, as {"subject", "message"} (the JSON body parsed)."""
    import json

    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.sns.models import sns_backends

    topic = sns_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].topics[topic_arn]
    return [{"subject": sent[2], "message": json.loads(sent[1])} for sent in topic.sent_notifications]
