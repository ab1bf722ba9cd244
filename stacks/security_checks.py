"""cdk-nag's AwsSolutions pack on every synth, and how a finding that is not fixed is accepted: on the resource it
is about, with its reason, for cdk-nag and checkov alike (docs/decisions/0015-security-scan.md).

Only the synth imports this module (app.py, tests/infrastructure): cdk-nag is a dev requirement, never in a function.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from aws_cdk import Aspects, CfnResource, Stack, cx_api
from cdk_nag import AwsSolutionsChecks, NagPackSuppression, NagSuppressions
from constructs import IConstruct

NAG_PREFIX = "AwsSolutions-"
CHECKOV_PREFIX = "CKV_"
CHECKOV_METADATA = "checkov"

# Findings that another piece of work fixes. They are neither fixed nor accepted here: every synth (and `make scan`)
# still reports them but does not fail on them, and tests/infrastructure/test_security.py fails once one is gone (so
# it is taken off this list). Rule or check id -> the work that fixes it.
PENDING_FINDINGS: dict[str, str] = {}  # none: the API's access logs (APIG1, CKV_AWS_95) came with the monitoring work

# CDK's own deployment-time helpers (S3 notifications, the web app's upload, auto-delete): CDK makes them and
# their roles, they run only while CloudFormation deploys, and none of their settings is ours to choose.
CDK_HELPER_IDS = (
    "BucketNotificationsHandler",
    "Custom::CDKBucketDeployment",
    "Custom::S3AutoDeleteObjectsCustomResourceProvider",
)


@dataclass(frozen=True)
class Accepted:
    """A finding left as it is: `rule` is a cdk-nag rule (AwsSolutions-…) or a checkov check (CKV_…)."""

    rule: str
    reason: str
    # cdk-nag's finding patterns for rules that report several (IAM5: "Action::s3:List*", "Resource::…");
    # "/…/" is a regular expression. Empty: every finding of the rule on the resource.
    applies_to: tuple[str, ...] = ()


def for_reason(reason: str, *rules: str) -> tuple[Accepted, ...]:
    """One reason for several rules: a cdk-nag rule and the checkov check that finds the same thing, say."""
    return tuple(Accepted(rule, reason) for rule in rules)


def apply_checks(stack: Stack) -> None:
    """Runs the AwsSolutions pack over `stack` when it is synthesized; its errors and warnings become annotations."""
    Aspects.of(stack).add(AwsSolutionsChecks())
    _accept_cdk_helpers(stack)


def accept(construct: IConstruct, *findings: Accepted) -> None:
    """Records `findings` as accepted on `construct` (and for cdk-nag, on the resources under it)."""
    nag = [finding for finding in findings if finding.rule.startswith(NAG_PREFIX)]
    checkov = [finding for finding in findings if finding.rule.startswith(CHECKOV_PREFIX)]
    unknown = set(findings) - set(nag) - set(checkov)
    if unknown:
        raise ValueError(f"not a cdk-nag rule or a checkov check: {sorted(f.rule for f in unknown)}")
    if nag:
        NagSuppressions.add_resource_suppressions(construct, [_nag_suppression(f) for f in nag], apply_to_children=True)
    for resource in _checked_resources(construct) if checkov else ():
        _add_checkov_skips(resource, checkov)


def _nag_suppression(finding: Accepted) -> NagPackSuppression:
    applies_to = [_applies_to(pattern) for pattern in finding.applies_to] or None
    return NagPackSuppression(id=finding.rule, reason=finding.reason, applies_to=applies_to)


def _applies_to(pattern: str) -> str | dict[str, str]:
    return {"regex": pattern + "g"} if pattern.startswith("/") and pattern.endswith("/") else pattern


def _checked_resources(construct: IConstruct) -> list[CfnResource]:
    """The CloudFormation resource a construct stands for (an L2's default child), or every one under it."""
    if isinstance(construct, CfnResource):
        return [construct]
    default_child = construct.node.default_child
    if isinstance(default_child, CfnResource):
        return [default_child]
    return [child for child in construct.node.find_all() if isinstance(child, CfnResource)]


def _add_checkov_skips(resource: CfnResource, findings: Iterable[Accepted]) -> None:
    """checkov reads `Metadata: checkov: skip: [{id, comment}]` on a resource; several calls add up."""
    metadata = resource.get_metadata(CHECKOV_METADATA) or {"skip": []}
    skipped = {entry["id"] for entry in metadata["skip"]}
    metadata["skip"] += [{"id": f.rule, "comment": f.reason} for f in findings if f.rule not in skipped]
    resource.add_metadata(CHECKOV_METADATA, metadata)


def _accept_cdk_helpers(stack: Stack) -> None:
    """On every resource of each helper (its function, role and policy), which `accept` alone would not reach."""
    for child in stack.node.children:
        if child.node.id.startswith(CDK_HELPER_IDS):
            for resource in child.node.find_all():
                if isinstance(resource, CfnResource):
                    accept(resource, *CDK_HELPER_FINDINGS)


_CDK_HELPER = "CDK's own deployment-time helper (made by CDK, run only while CloudFormation deploys): "
CDK_HELPER_FINDINGS = (
    Accepted("AwsSolutions-IAM4", _CDK_HELPER + "CDK gives it the basic execution role"),
    Accepted("AwsSolutions-IAM5", _CDK_HELPER + "CDK scopes its policy to the buckets and assets it deploys"),
    Accepted("AwsSolutions-L1", _CDK_HELPER + "CDK chooses its runtime"),
    Accepted("CKV_AWS_111", _CDK_HELPER + "CDK scopes its write access to the buckets it deploys into"),
    Accepted("CKV_AWS_115", _CDK_HELPER + "a few invocations a deploy need no reserved concurrency"),
    Accepted("CKV_AWS_116", _CDK_HELPER + "CloudFormation invokes it synchronously and reports its failures"),
    Accepted("CKV_AWS_117", _CDK_HELPER + "it calls only AWS APIs; a VPC would add a NAT gateway's cost"),
    Accepted("CKV_AWS_173", _CDK_HELPER + "its environment holds no secrets"),
)


@dataclass(frozen=True)
class Finding:
    """An unaccepted cdk-nag finding in a synthesized stack."""

    level: str  # "error" or "warning"
    rule: str  # e.g. AwsSolutions-SQS3, or AwsSolutions-IAM5[Resource::*]
    path: str  # the construct path of the resource
    message: str

    @property
    def rule_id(self) -> str:
        return self.rule.split("[", 1)[0]

    def __str__(self) -> str:
        return f"{self.level} {self.path}: {self.message}"


def nag_findings(assembly: cx_api.CloudAssembly) -> list[Finding]:
    """Every cdk-nag error and warning that no Accepted covers, in every stack of `assembly`."""
    levels = {cx_api.SynthesisMessageLevel.ERROR: "error", cx_api.SynthesisMessageLevel.WARNING: "warning"}
    findings = []
    for stack in assembly.stacks:
        for message in stack.messages:
            text = str(message.entry.data).strip()
            if message.level in levels and text.startswith(NAG_PREFIX):
                rule = text.split(":", 1)[0]
                findings.append(Finding(levels[message.level], rule, message.id, text))
    return findings


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The findings that fail a synth, errors and warnings alike: all but those PENDING_FINDINGS expects."""
    return [finding for finding in findings if finding.rule_id not in PENDING_FINDINGS]
