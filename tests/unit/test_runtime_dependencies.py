"""What the functions import must be in what Lambda has: the layer (requirements.txt) or the runtime (boto3).

The development environment has far more installed than the layer (httpx, aiohttp, rich, ...), so a module
that imports something only a developer has passes every other test here and fails in Lambda at import.
"""

from __future__ import annotations

import ast
import sys
from importlib import metadata
from pathlib import Path

from layers.requirements import lambda_distributions, normalised

REPO_ROOT = Path(__file__).resolve().parents[2]
FUNCTION_PACKAGES = ("functions", "shared")
# Imported only where the Lambda runtime provides them, or guarded with a fallback for local runs.
ONLY_IN_LAMBDA = frozenset({"snapshot_restore_py", "awslambdaric"})


def imported_top_level_modules() -> dict[str, str]:
    """Every top-level module the function packages import (module level or inside functions) -> one file."""
    found: dict[str, str] = {}
    for package in FUNCTION_PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    found.setdefault(name.split(".")[0], str(path.relative_to(REPO_ROOT)))
    return found


def test_every_third_party_module_the_functions_import_is_in_the_layer_or_the_runtime() -> None:
    # Given what the layer installs and what the runtime provides
    available = lambda_distributions()
    distributions_of = metadata.packages_distributions()
    # When every import of the function packages is traced to its distribution
    missing = {}
    for module, where in imported_top_level_modules().items():
        if module in sys.stdlib_module_names or module in FUNCTION_PACKAGES or module in ONLY_IN_LAMBDA:
            continue
        owners = {normalised(d) for d in distributions_of.get(module, [])}
        if not owners & available:
            missing[module] = (where, sorted(owners) or "not installed here")
    # Then none is missing
    assert not missing, f"imported by the functions but not in requirements.txt's closure: {missing}"
