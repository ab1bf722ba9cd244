"""`make scan`: checkov over the synthesized prod templates -> bench/results/security_scan.json.

Every check that fails must be fixed or skipped with a reason on its resource (stacks/security_checks.py); this
exits 1 when one fails that is not pending another piece of work (PENDING_FINDINGS).

    python -m tools.security_scan --checkov .venv-scan/bin/checkov cdk.out/DocuChat-prod-*.template.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent.parent / "bench" / "results" / "security_scan.json"


def run_checkov(checkov: str, templates: list[str]) -> dict[str, Any]:
    # --skip-download: no call to the vendor's platform for guidelines (this machine reaches only package registries).
    command = [checkov, "--framework", "cloudformation", "--skip-download", "-o", "json", "-f", *templates]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode not in (0, 1):  # 1: some check failed
        raise SystemExit(f"checkov failed ({finished.returncode}): {finished.stderr[-2000:]}")
    report = json.loads(finished.stdout)
    reports = report if isinstance(report, list) else [report]
    [cloudformation] = [r for r in reports if r["check_type"] == "cloudformation"]
    return dict(cloudformation)


def summarize(report: dict[str, Any], pending: dict[str, str]) -> dict[str, Any]:
    results = report["results"]
    failed = [
        {"check": c["check_id"], "resource": c["resource"], "pending": pending.get(c["check_id"])}
        for c in results["failed_checks"]
    ]
    skipped = Counter(c["check_id"] for c in results["skipped_checks"])
    summary = report["summary"]
    return {
        "tool": f"checkov {summary['checkov_version']}",
        "templates": "prod (make synth STAGE=prod)",
        "passed": summary["passed"],
        "failed": summary["failed"],
        "skipped": summary["skipped"],
        "resources": summary["resource_count"],
        "failed_checks": failed,
        "skipped_by_check": dict(sorted(skipped.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkov", required=True, help="the checkov executable")
    parser.add_argument("templates", nargs="+")
    args = parser.parse_args(argv)

    from stacks.security_checks import PENDING_FINDINGS

    result = summarize(run_checkov(args.checkov, args.templates), PENDING_FINDINGS)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"checkov: {result['passed']} passed, {result['failed']} failed, {result['skipped']} skipped -> {RESULTS}")
    unexpected = [f for f in result["failed_checks"] if not f["pending"]]
    for failure in result["failed_checks"]:
        note = f" (pending: {failure['pending']})" if failure["pending"] else ""
        print(f"  failed {failure['check']} {failure['resource']}{note}")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
