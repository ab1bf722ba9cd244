"""DocuChat's CDK app: both stacks of one stage.

The stage comes from `--stage X` (python app.py --stage prod, as `make synth STAGE=prod` runs it) or from the
CDK context (cdk deploy --all -c stage=prod); cdk.json's default is dev. Run outside the CDK CLI, the app reads
cdk.json's context itself and writes the templates to cdk.out/.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from stacks.stage_config import CDK_JSON, UnknownStageError, load_stage

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_OUTDIR = PROJECT_ROOT / "cdk.out"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Synthesizes DocuChat's CloudFormation templates for one stage.")
    parser.add_argument("--stage", help="dev, staging or prod (default: the context's `stage`, dev in cdk.json)")
    args = parser.parse_args(argv)

    # The CDK CLI passes cdk.json's context and the output folder through the environment; without it, do it here.
    under_cdk_cli = "CDK_OUTDIR" in os.environ
    context: dict[str, Any] = {} if under_cdk_cli else json.loads(CDK_JSON.read_text())["context"]
    if args.stage:
        context["stage"] = args.stage

    # Imported here, not at the top: loading aws_cdk starts a Node process, needless for --help or a bad stage.
    from aws_cdk import App

    from stacks.docuchat import add_stage

    app = App(context=context, outdir=None if under_cdk_cli else str(DEFAULT_OUTDIR))
    stage_name = str(app.node.try_get_context("stage") or "dev")
    try:
        stage = load_stage(stage_name, app.node.try_get_context("stages"))
    except UnknownStageError as error:
        print(f"app.py: {error}", file=sys.stderr)
        return 2

    started = time.monotonic()
    stacks = add_stage(app, stage, account=os.environ.get("CDK_DEFAULT_ACCOUNT"))
    assembly = app.synth()
    names = ", ".join(stack.stack_name for stack in stacks)
    print(f"synthesized {names} into {assembly.directory} in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return _report_security_findings(assembly)


def _report_security_findings(assembly: Any) -> int:
    """cdk-nag's findings that no one accepted (stacks/security_checks.py) fail the synth, but those still pending."""
    from stacks.security_checks import PENDING_FINDINGS, blocking, nag_findings

    findings = nag_findings(assembly)
    failing = blocking(findings)
    for finding in findings:
        pending = PENDING_FINDINGS.get(finding.rule_id)
        print(f"cdk-nag: {finding}" + (f" (pending: {pending})" if pending else ""), file=sys.stderr)
    if failing:
        print(f"app.py: {len(failing)} cdk-nag finding(s) neither fixed nor accepted with a reason", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
