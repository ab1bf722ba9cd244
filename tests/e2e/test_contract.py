"""The OpenAPI contract tells the truth: schemathesis, every check, against `python -m local` (bounded run).

Tenant routes are driven with a tenant key and admin routes with the admin key. What the schema cannot
express (an opaque cursor, a date range's order) is allowed per operation in schemathesis.toml, with why.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from local.process import PROJECT_ROOT, LocalProcess, new_tenant

ADMIN_KEY = "dca_contract-admin-0123456789"
EXAMPLES = "15"  # per operation and phase: enough to find what the schema gets wrong, within a minute


@pytest.mark.parametrize("door", ["tenant", "admin"])
def test_schemathesis_finds_nothing(door: str, tmp_path: Path) -> None:
    with LocalProcess(tmp_path / "run.log", ADMIN_KEY, env={"DOCUCHAT_EMBEDDER": "local"}) as runtime:
        _, key = new_tenant(runtime.url, ADMIN_KEY, "C", "c@x.test")
        credential, paths = (
            (key, ["--exclude-path-regex", "^/v1/admin"])
            if door == "tenant"
            else (
                ADMIN_KEY,
                ["--include-path-regex", "^/v1/admin"],
            )
        )
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{runtime.url}/openapi.json",
                "--checks",
                "all",
                "--max-examples",
                EXAMPLES,
                "--generation-deterministic",
                "--request-timeout",
                "30",
                "-H",
                f"Authorization: Bearer {credential}",
                *paths,
            ],
            cwd=PROJECT_ROOT,  # where schemathesis.toml is
            capture_output=True,
            text=True,
            timeout=600,
        )
    assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
