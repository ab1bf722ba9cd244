"""`python -m local` as a child process on a free loopback port: what `make load` and the e2e tests drive.

    with LocalProcess(log=Path("run.log"), admin_key="dca_...") as runtime:
        httpx.get(runtime.url + "/health")
    # the context's end is Ctrl-C's signal, then a kill if it does not stop

The child gets a clean environment (no DOCUCHAT_, OPENAI_ or POWERTOOLS_ settings of the caller's) plus `env`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(child) for child in task.read_text().split()]
        except OSError:
            continue
    return found


class LocalProcess:
    def __init__(
        self,
        log: Path,
        admin_key: str,
        data_dir: Path | None = None,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_key = admin_key
        self.log = log
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("DOCUCHAT_", "OPENAI_", "POWERTOOLS_"))}
        clean |= {"PORT": str(self.port), "DOCUCHAT_ADMIN_KEY": admin_key, **(env or {})}
        if data_dir:
            clean["DOCUCHAT_DATA_DIR"] = str(data_dir)
        self._out = log.open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "local"], cwd=PROJECT_ROOT, env=clean, stdout=self._out, stderr=subprocess.STDOUT
        )
        self.stop_seconds: float | None = None

    def wait_until_up(self, path: str = "/health", timeout: float = STARTUP_SECONDS) -> Self:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the local runtime exited early:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the local runtime did not start in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def children(self) -> list[int]:
        """The processes it started (DynamoDB Local)."""
        return children(self.process.pid)

    def interrupt(self, timeout: float = 60) -> int:
        """Ctrl-C, as a developer presses it; waits until it and its children are gone, and times that."""
        waiting_for = self.children()
        began = time.monotonic()
        self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=timeout)
            while any(alive(pid) for pid in waiting_for) and time.monotonic() - began < timeout:
                time.sleep(0.05)
            self.stop_seconds = round(time.monotonic() - began, 2)
            if any(alive(pid) for pid in waiting_for):
                raise RuntimeError("DynamoDB Local outlived the local runtime")
            return code
        finally:
            self._out.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if not self._out.closed:
            self._out.close()

    def __enter__(self) -> Self:
        return self.wait_until_up()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.process.poll() is None:
                self.interrupt()
        finally:
            self.kill()


UNLIMITED = {"requests_per_minute": None, "requests_per_hour": None, "monthly_token_budget": None}


def new_tenant(url: str, admin_key: str, name: str, email: str, unlimited: bool = True) -> tuple[str, str]:
    """A tenant and an API key on a running system; returns (tenant id, key).

    Unlimited by default: a benchmark or a test sends more in a minute than the stage's default limits allow
    (the tests of the limits set their own)."""
    admin = {"Authorization": f"Bearer {admin_key}"}
    created = httpx.post(f"{url}/v1/admin/tenants", json={"name": name, "email": email}, headers=admin, timeout=30)
    created.raise_for_status()
    tenant_id = str(created.json()["tenant"]["tenant_id"])
    if unlimited:
        lifted = httpx.patch(
            f"{url}/v1/admin/tenants/{tenant_id}", json={"limits": UNLIMITED}, headers=admin, timeout=30
        )
        lifted.raise_for_status()
    key = httpx.post(f"{url}/v1/admin/tenants/{tenant_id}/keys", json={"name": name}, headers=admin, timeout=30)
    key.raise_for_status()
    return tenant_id, str(key.json()["api_key"])


def add_text_document(url: str, key: str, title: str, text: str, content_type: str = "text/plain") -> str:
    """A document of inline text on a running system; returns its id (ingestion has only begun)."""
    body = {"title": title, "text": text, "content_type": content_type}
    created = httpx.post(f"{url}/v1/documents", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
    created.raise_for_status()
    return str(created.json()["document_id"])


def wait_until_ready(url: str, key: str, document_id: str, timeout: float = 60) -> None:
    """Until the document is ready; a failed document, or one still not ready at `timeout`, raises."""
    auth = {"Authorization": f"Bearer {key}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"{url}/v1/documents/{document_id}", headers=auth, timeout=30).json()
        if status["status"] == "ready":
            return
        if status["status"] == "failed":
            raise RuntimeError(f"document {document_id} failed: {status.get('reason')}")
        time.sleep(0.2)
    raise RuntimeError(f"document {document_id} did not get ready in {timeout:.0f} s")
