"""The functions' code asset, made without Docker: functions/ and shared/ copied under build/lambda_src/.

All four functions share one bundle (their handlers differ, the code does not), so one asset is uploaded per
change. Tests, caches and this machine's bytecode are left out; the bundle gets bytecode compiled for Lambda's
Python instead (layers/bytecode.py), so cold starts do not compile our modules. This module imports nothing from
CDK.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

from layers import bytecode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("functions", "shared")
BUNDLES_DIR = PROJECT_ROOT / "build" / "lambda_src"
# Other synths (tests, `make synth`) may still be reading an older bundle; only long-idle ones are removed.
_STALE_AFTER_SECONDS = 15 * 60

_LEFT_OUT_NAMES = ("__pycache__", "tests", ".pytest_cache", ".mypy_cache", ".ruff_cache", "conftest.py")
_LEFT_OUT_GLOBS = ("*.pyc", "*.pyo", "test_*.py", "*_test.py")


def function_code_dir() -> Path:
    """The bundle of the current sources, ready for lambda Code.from_asset; built when missing.

    Each bundle lives in a folder named by its content's hash and never changes once there, so several synths
    running at once (tests, `make synth`) never read a half-written or replaced folder.
    """
    sources = _source_files()
    bundle = BUNDLES_DIR / _content_hash(sources)
    if not bundle.is_dir():
        staging = BUNDLES_DIR / f".staging-{uuid.uuid4().hex}"
        for relative in sources:
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PROJECT_ROOT / relative, staging / relative)
        bytecode.compile_tree(staging)
        try:
            staging.rename(bundle)
        except OSError:  # another synth put the same bundle in place first
            shutil.rmtree(staging, ignore_errors=True)
    os.utime(bundle)  # marks it in use, so a synth of other sources does not remove it as stale
    _remove_stale_bundles(keep=bundle)
    return bundle


def _source_files() -> list[Path]:
    """Paths, relative to the project root, of every file that goes into the bundle."""
    files = []
    for package in PACKAGES:
        for path in (PROJECT_ROOT / package).rglob("*"):
            relative = path.relative_to(PROJECT_ROOT)
            if path.is_file() and not _left_out(relative):
                files.append(relative)
    return sorted(files)


def _left_out(relative: Path) -> bool:
    if any(part in _LEFT_OUT_NAMES for part in relative.parts):
        return True
    return any(relative.match(pattern) for pattern in _LEFT_OUT_GLOBS)


def _content_hash(sources: list[Path]) -> str:
    digest = hashlib.sha256(bytecode.compiled_for().encode())
    for relative in sources:
        digest.update(relative.as_posix().encode() + b"\0")
        digest.update((PROJECT_ROOT / relative).read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _remove_stale_bundles(keep: Path) -> None:
    now = time.time()
    for folder in BUNDLES_DIR.iterdir():
        if folder != keep and now - folder.stat().st_mtime > _STALE_AFTER_SECONDS:
            shutil.rmtree(folder, ignore_errors=True)
