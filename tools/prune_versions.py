"""Delete the chat function's superseded Lambda versions, which SnapStart deploys leave behind.

With SnapStart the API calls the chat function through its `live` alias, so every deploy that changes the code
publishes a version (and a snapshot of it). CDK keeps the old versions (RETAIN), so without pruning they pile up
until the account's code storage runs out. This keeps every version an alias points at (with its routing weights)
and the newest `--keep`, which leaves a few to move the alias back to, and deletes the rest.

    python -m tools.prune_versions --stage prod               # docuchat-prod-chat, keeps the newest 3
    python -m tools.prune_versions --function NAME --keep 5 --dry-run

AWS credentials and the region come from the environment, as for the AWS CLI.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.resources import physical_name

DEFAULT_KEEP = 3
LATEST = "$LATEST"  # the unpublished code: not a version that can be deleted
CHAT_FUNCTION = "chat"  # the function SnapStart is on (stacks/compute.py's API_FUNCTION)


def pinned_versions(aliases: Iterable[Mapping[str, Any]]) -> set[str]:
    """Versions some alias serves: its own, and those it sends a share of its traffic to."""
    pinned: set[str] = set()
    for alias in aliases:
        pinned.add(str(alias["FunctionVersion"]))
        weights = alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {})
        pinned.update(str(version) for version in weights)
    return pinned


def versions_to_delete(versions: Iterable[str], pinned: set[str], keep: int) -> list[str]:
    """The published versions that are neither among the newest `keep` nor pinned by an alias, oldest first."""
    if keep < 0:
        raise ValueError("keep must be 0 or more")
    published = sorted({int(v) for v in versions if v != LATEST})
    newest = set(published[max(len(published) - keep, 0) :])
    return [str(v) for v in published if v not in newest and str(v) not in pinned]


def prune(lambda_client: Any, function_name: str, keep: int, dry_run: bool) -> list[str]:
    """Deletes (or, with `dry_run`, only names) the versions `versions_to_delete` selects; returns them."""
    versions = lambda_client.get_paginator("list_versions_by_function").paginate(FunctionName=function_name)
    aliases = lambda_client.get_paginator("list_aliases").paginate(FunctionName=function_name)
    doomed = versions_to_delete(
        (v["Version"] for page in versions for v in page["Versions"]),
        pinned_versions(a for page in aliases for a in page["Aliases"]),
        keep,
    )
    if not dry_run:
        for version in doomed:
            lambda_client.delete_function(FunctionName=function_name, Qualifier=version)
    return doomed


def main(argv: Sequence[str] | None = None, lambda_client: Any = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--stage", help="prune docuchat-<stage>-chat")
    target.add_argument("--function", help="prune this function (name or ARN)")
    parser.add_argument("--keep", type=int, default=DEFAULT_KEEP, help=f"newest versions kept (default {DEFAULT_KEEP})")
    parser.add_argument("--dry-run", action="store_true", help="only print what would be deleted")
    args = parser.parse_args(argv)
    if args.keep < 0:
        parser.error("--keep must be 0 or more")
    function_name = args.function or physical_name(args.stage, CHAT_FUNCTION)
    if lambda_client is None:
        import boto3

        lambda_client = boto3.client("lambda")
    doomed = prune(lambda_client, function_name, args.keep, args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    listed = ", ".join(doomed) if doomed else "nothing"
    print(f"{function_name}: {verb} {len(doomed)} superseded version(s): {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
