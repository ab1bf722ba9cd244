"""The web app in Chromium against `python -m local` (what `make dev` runs), with a slow local model behind it.

Each test gets a fresh browser context (an empty sessionStorage) and fails on any console error it did not
provoke. With DOCUCHAT_SCREENSHOTS set (`make screenshots`), the views' screenshots are written there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.fake_openai import FakeOpenAI, fake_reply
from local.process import LocalProcess, add_text_document, new_tenant, wait_until_ready
from tests.support.browser import ConsoleWatch, launch_options

ADMIN_KEY = "dca_browser-admin-0123456789abcdef"
CHUNK_DELAY = 0.04  # the model writes a word every 40 ms: an answer takes a second or two, as a user sees it


@pytest.fixture(scope="session")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_delay_seconds=CHUNK_DELAY) as server:
        yield server


@pytest.fixture(autouse=True)
def plain_model(upstream: FakeOpenAI) -> Iterator[None]:
    """Each test starts with the model answering as usual, at the usual pace."""
    upstream.responder = fake_reply
    upstream.chunk_delay_seconds = CHUNK_DELAY
    yield


@pytest.fixture(scope="session")
def runtime(upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalProcess]:
    env = {
        "OPENAI_API_KEY": "sk-browser",
        "OPENAI_BASE_URL": upstream.base_url,
        "LLM_MODEL": "gpt-4o-mini",
        "LLM_FALLBACK_MODEL": "",
        "LLM_CACHE_TTL": "0",
        "DOCUCHAT_EMBEDDER": "local",
        # Dear enough that one question's invoice is over Zibal's minimum, and its amount has a thousands separator.
        "DOCUCHAT_PRICES": '{"default": 5000}',
    }
    with LocalProcess(tmp_path_factory.mktemp("browser") / "run.log", ADMIN_KEY, env=env) as process:
        yield process


class Tenant:
    def __init__(self, url: str, tenant_id: str, key: str) -> None:
        self.url, self.tenant_id, self.key = url, tenant_id, key
        self.auth = {"Authorization": f"Bearer {key}"}

    def add_text(self, title: str, text: str, content_type: str = "text/plain") -> str:
        document_id = add_text_document(self.url, self.key, title, text, content_type)
        wait_until_ready(self.url, self.key, document_id)
        return document_id


@pytest.fixture
def tenant(runtime: LocalProcess, request: pytest.FixtureRequest) -> Tenant:
    """A tenant of its own for each test, so what one test uploads or asks is not another's."""
    tenant_id, key = new_tenant(runtime.url, ADMIN_KEY, request.node.name[:60], "staff@tenant.test")
    return Tenant(runtime.url, tenant_id, key)


# Package scope: Playwright's sync API runs an event loop on the main thread while it is open, and the tiers
# collected after this one (asyncio.run inside Mangum and FastAPI's test client) need it closed again.
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(**launch_options())
        yield chromium
        chromium.close()


@pytest.fixture
def console() -> ConsoleWatch:
    return ConsoleWatch()


@pytest.fixture
def page(browser: Any, runtime: LocalProcess, console: ConsoleWatch) -> Iterator[Any]:
    context = browser.new_context(base_url=runtime.url, viewport={"width": 1280, "height": 860}, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    console.attach(page)
    yield page
    context.close()
    assert console.unexpected() == [], "the page logged errors"


@pytest.fixture(scope="session")
def screenshots() -> Path | None:
    where = os.environ.get("DOCUCHAT_SCREENSHOTS")
    if not where:
        return None
    folder = Path(where)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
