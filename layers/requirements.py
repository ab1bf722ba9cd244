"""What the Lambda functions have to import from: the layer's distributions (requirements.txt and the model's,
with their dependencies) and what the Python runtime provides (boto3). Read from this machine's installed
metadata; used by the tests that check imports against it and by the cold-start benchmark's Lambda-like path."""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = PROJECT_ROOT / "requirements.txt"
MODEL_REQUIREMENTS = PROJECT_ROOT / "requirements-model.txt"  # installed with --no-deps
# The Lambda Python runtime's own packages: boto3 and what it needs.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"})


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names(file: Path) -> set[tuple[str, str]]:
    """(distribution, extra or "") for each one `file` names, with each extra asked for."""
    names = set()
    for line in file.read_text().splitlines():
        if line.strip() and not line.startswith(("#", "-")):
            requirement = Requirement(line.split("#")[0].strip())
            names |= {(normalised(requirement.name), extra) for extra in {"", *requirement.extras}}
    return names


@cache
def _requires(distribution: str, extra: str) -> frozenset[tuple[str, str]]:
    """What installing `distribution` (with `extra`) installs on Linux: its requirements whose markers hold."""
    try:
        declared = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    wanted = set()
    for line in declared:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": extra, "sys_platform": "linux"}):
            wanted |= {(normalised(requirement.name), extra) for extra in {"", *requirement.extras}}
    return frozenset(wanted)


def installable_closure(roots: set[tuple[str, str]]) -> set[str]:
    """The distributions pip installs for `roots`: them and their dependencies, transitively."""
    seen: set[tuple[str, str]] = set()
    todo = list(roots)
    while todo:
        root = todo.pop()
        if root not in seen:
            seen.add(root)
            todo.extend(_requires(*root))
    return {name for name, _ in seen}


def lambda_distributions() -> set[str]:
    """Every distribution a function can import in Lambda: the layer's and the runtime's."""
    runtime = {(name, "") for name in PROVIDED_BY_RUNTIME}
    model = {name for name, _ in requirement_names(MODEL_REQUIREMENTS)}
    return installable_closure(requirement_names(REQUIREMENTS)) | installable_closure(runtime) | model
