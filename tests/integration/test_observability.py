"""Logs that follow one request across functions: the chat's correlation id on the metering lines of its usage."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from shared.observability import logger
from tests.support.harness import Harness


class LogLines:
    """The functions' log lines as Powertools writes them (JSON, formatted when written), taken in turns."""

    def __init__(self) -> None:
        self.handler = logging.StreamHandler(io.StringIO())
        self.handler.setFormatter(logger.registered_formatter)

    def take(self) -> list[dict[str, Any]]:
        written = self.handler.setStream(io.StringIO())
        return [json.loads(line) for line in written.getvalue().splitlines() if line] if written else []


@pytest.fixture
def log_lines() -> Iterator[LogLines]:
    lines = LogLines()
    logger.addHandler(lines.handler)
    yield lines
    logger.removeHandler(lines.handler)


def test_a_chats_usage_is_logged_by_metering_with_the_chats_correlation_id(
    harness: Harness, log_lines: LogLines
) -> None:
    # Given a tenant
    tenant_id, key = harness.new_tenant()
    log_lines.take()
    # When it chats through the HTTP API (request id "req-chat-1"), and metering takes the usage events
    reply = harness.call(
        "POST", "/v1/chat", {"message": "hello there", "use_documents": False}, key=key, request_id="req-chat-1"
    )
    assert reply.status == 200, reply
    chat_lines = log_lines.take()
    assert harness.drain("usage") >= 1
    metering_lines = log_lines.take()
    # Then the chat's lines carry its correlation id and tenant
    assert chat_lines
    assert all(line.get("correlation_id") == "req-chat-1" for line in chat_lines), chat_lines
    assert any(line.get("tenant_id") == tenant_id for line in chat_lines), chat_lines
    # And metering's line for each of its events carries the same correlation id and tenant
    received = [line for line in metering_lines if line["message"] == "usage event received"]
    assert received, metering_lines
    assert {(line["correlation_id"], line["tenant_id"]) for line in received} == {("req-chat-1", tenant_id)}
    # And the lines metering writes for the batch as a whole do not keep the last record's ids
    others = [line for line in metering_lines if line["message"] != "usage event received"]
    assert all(line.get("correlation_id") in (None, "") for line in others), others


def test_each_request_is_measured_by_its_route_group(harness: Harness, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a tenant
    _, key = harness.new_tenant()
    capsys.readouterr()
    # When it chats, and asks for a document that does not exist
    assert harness.call("POST", "/v1/chat", {"message": "hello", "use_documents": False}, key=key).status == 200
    assert harness.call("GET", "/v1/documents/d0123456789abcdef", key=key).status == 404
    # Then each request's latency is written with its route group (the route's tag), never a path or a tenant
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    routed = [line for line in written if "RequestLatency" in line and "route" in line]
    assert [line["route"] for line in routed] == ["chat", "documents"]
    for line in routed:
        assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["route", "service"]]
        assert line["RequestLatency"][0] > 0
