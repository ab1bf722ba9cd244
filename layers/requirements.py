"""What the Lambda functions have to import from: the layer's distributions (requirements.txt and the model's,
with their dependencies) and what the Python runtime provides (boto3). Read from this machine's installed
metadata; used by the tests that check imports against it and by the cold-start benchmark's Lambda-like path."""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS_FILES = ("requirements.txt", "requirements-model.txt")
# The Lambda Python runtime's own packages: boto3 and what it needs.
PROVIDED_BY_RUNTIME = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "urllib3", "six"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_names() -> set[str]:
    """The distributions the requirements files name."""
    names = set()
    for file in REQUIREMENTS_FILES:
        for line in (PROJECT_ROOT / file).read_text().splitlines():
            match = _NAME.match(line.strip())
            if match and not line.startswith(("#", "-")):
                names.add(normalised(match.group(0)))
    return names


@cache
def _requires(distribution: str) -> frozenset[str]:
    try:
        declared = metadata.requires(distribution) or []
    except metadata.PackageNotFoundError:
        return frozenset()
    # Extras' and other platforms' requirements (after a ";") are not installed in the layer.
    names = (_NAME.match(requirement) for requirement in declared if ";" not in requirement)
    return frozenset(normalised(match.group(0)) for match in names if match)


def installable_closure(roots: set[str]) -> set[str]:
    """The distributions pip installs for `roots`: them and their unconditional dependencies, transitively."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_requires(name))
    return seen


def lambda_distributions() -> set[str]:
    """Every distribution a function can import in Lambda: the layer's and the runtime's."""
    return installable_closure(requirement_names()) | installable_closure(set(PROVIDED_BY_RUNTIME))
