"""make dev's web app server: the API's paths go to the API, the rest is web/ with its security headers."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from local.web import WithWebApp
from stacks.web_policy import SECURITY_HEADERS


async def fake_api(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"api:" + scope["path"].encode()})  # type: ignore[operator]


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    (tmp_path / "index.html").write_text("<!doctype html><title>app</title>")
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "api.js").write_text("export {}")
    (tmp_path / ".secret").write_text("no")
    (tmp_path.parent / "outside.txt").write_text("no")
    app = WithWebApp(fake_api, {"api_url": ""}, connect_to=["http://127.0.0.1:4566"], root=tmp_path)
    return TestClient(app)


@pytest.mark.parametrize("path", ["/v1/documents", "/health", "/health/ready", "/docs", "/openapi.json"])
def test_the_apis_paths_reach_the_api(client: TestClient, path: str) -> None:
    assert client.get(path).text == "api:" + path


@pytest.mark.parametrize("path", ["/", "/chat", "/documents", "/usage/", "/invoices/anything"])
def test_the_apps_routes_are_answered_with_index_html_and_its_headers(client: TestClient, path: str) -> None:
    reply = client.get(path)
    assert reply.status_code == 200 and "<title>app</title>" in reply.text
    policy = reply.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert "connect-src 'self' http://127.0.0.1:4566" in policy
    for name, value in SECURITY_HEADERS.items():
        if name != "Strict-Transport-Security":  # meaningless on plain-HTTP loopback
            assert reply.headers[name] == value


def test_files_are_served_with_their_type_and_config_json_is_generated(client: TestClient) -> None:
    script = client.get("/lib/api.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/config.json").json() == {"api_url": ""}


@pytest.mark.parametrize("path", ["/missing.js", "/.secret", "/lib/../../outside.txt", "/%2e%2e/outside.txt"])
def test_nothing_outside_web_or_hidden_is_served(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_the_app_only_answers_reads(client: TestClient) -> None:
    assert client.post("/chat").status_code == 405
