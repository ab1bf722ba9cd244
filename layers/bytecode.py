"""Bytecode for Lambda's Python (3.13), compiled when the layer and the functions' bundle are built.

Lambda's /opt (layers) and /var/task (the bundle) are read-only. A module with no .pyc for the running Python
is compiled from source at every cold start, and the result thrown away: for the chat function that was every
module of openai, fastapi, pydantic, Powertools and our own code, each time (bench/cold_start.py measures it).
The build machine's Python is usually not 3.13, so its own bytecode would be useless: a 3.13 interpreter
compiles it. Without one, the build still works and says the cold start will pay for compiling.

The bytecode is `unchecked-hash`: Lambda uses it as it is, without comparing it with its source's timestamp,
which the deployment zip does not keep. Right for files that never change once deployed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from pathlib import Path

LAMBDA_PYTHON = (3, 13)
BYTECODE_TAG = "cpython-{}{}".format(*LAMBDA_PYTHON)  # in the names of its .pyc files
# Where a developer's or CI's Python 3.13 may be, besides PATH (pyenv's shim answers only for its version).
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
_VERSION_CHECK = f"import sys; assert sys.version_info[:2] == {LAMBDA_PYTHON}"


@cache
def lambda_python() -> str | None:
    """A Python 3.13 interpreter: DOCUCHAT_PYTHON_LAMBDA, python3.13 on PATH, or one of pyenv's; None if none."""
    candidates = [os.environ.get("DOCUCHAT_PYTHON_LAMBDA"), shutil.which("python3.13")]
    candidates += [str(path) for path in sorted(PYENV_VERSIONS.glob("3.13*/bin/python3.13"))]
    for candidate in filter(None, candidates):
        checked = subprocess.run([candidate, "-c", _VERSION_CHECK], capture_output=True, check=False)
        if checked.returncode == 0:
            return candidate
    return None


def compiled_for() -> str:
    """What the bytecode built here is for: part of a build's fingerprint, so a build without it is redone."""
    return BYTECODE_TAG if lambda_python() else "none"


def compile_tree(root: Path) -> bool:
    """Compile every .py under `root` for Lambda's Python, in place; False (and a warning) without one."""
    python = lambda_python()
    if python is None:
        print(
            f"  bytecode: no Python {'.'.join(map(str, LAMBDA_PYTHON))} here, so none is built; each cold start "
            "in Lambda will compile its modules (set DOCUCHAT_PYTHON_LAMBDA to one)",
            flush=True,
        )
        return False
    command = [python, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(root)]
    # A few packages ship files for other Pythons that do not compile; compileall goes on past them.
    subprocess.run(command, capture_output=True, check=False)
    return True
