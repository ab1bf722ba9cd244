"""One stage's two synthesized templates, with lookups that follow references across them.

Assertions about wiring ("chat may write the documents table") need to know which resource an ARN in a policy
or a value in an environment variable points at, even when it arrives through a cross-stack Fn::ImportValue.
`targets(value)` answers that: the logical ids of the resources a template value refers to.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from shared.resources import physical_name
from stacks.docuchat import add_stage
from stacks.security_checks import Finding, nag_findings
from stacks.stage_config import StageConfig, load_stage

Resource = dict[str, Any]

# CDK's own custom resource providers are one per stack, with the same logical id in each (S3 auto-delete).
_CDK_PROVIDER_PREFIXES = ("CustomS3AutoDeleteObjectsCustomResourceProvider",)

_TEST_CONTEXT = {
    # Read the assets where they are instead of copying a 30 MB layer into every synth's output folder.
    "aws:cdk:disable-asset-staging": True,
    # Record each asset's folder on its resource (as the CDK CLI does), so tests can check what is packaged.
    "aws:cdk:enable-asset-metadata": True,
}


@dataclass
class SynthesizedStage:
    stage: StageConfig
    data_template: Template
    service_template: Template
    data_stack_name: str
    service_stack_name: str
    data_termination_protection: bool
    # The Service stack's file assets: each one's hash (its S3 object key, less .zip) and the folder it is made of.
    service_assets: dict[str, str]
    # cdk-nag's findings in both stacks that no Accepted covers (stacks/security_checks.py).
    nag_findings: list[Finding]
    resources: dict[str, Resource] = field(init=False)
    _exports: dict[str, Any] = field(init=False)

    def __post_init__(self) -> None:
        data, service = self.data_template.to_json(), self.service_template.to_json()
        duplicates = {
            rid
            for rid in data["Resources"].keys() & service["Resources"].keys()
            if not rid.startswith(_CDK_PROVIDER_PREFIXES)
        }
        assert not duplicates, f"logical ids in both stacks make lookups ambiguous: {duplicates}"
        self.data_json, self.service_json = data, service
        self.resources = {**data["Resources"], **service["Resources"]}
        self._exports = {
            output["Export"]["Name"]: output["Value"]
            for output in data.get("Outputs", {}).values()
            if "Export" in output
        }

    # --- finding resources -------------------------------------------------------------------------------

    def of_type(self, resource_type: str) -> dict[str, Resource]:
        return {rid: r for rid, r in self.resources.items() if r["Type"] == resource_type}

    def one_of_type(self, resource_type: str) -> tuple[str, Resource]:
        found = self.of_type(resource_type)
        assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
        return next(iter(found.items()))

    def named(self, resource_type: str, name_property: str, name: str) -> tuple[str, Resource]:
        found = {rid: r for rid, r in self.of_type(resource_type).items() if props(r).get(name_property) == name}
        assert len(found) == 1, f"expected one {resource_type} with {name_property}={name!r}, found {sorted(found)}"
        return next(iter(found.items()))

    def with_id_prefix(self, resource_type: str, prefix: str) -> str:
        """The logical id of the one resource of that type whose construct path starts with `prefix`."""
        found = [rid for rid in self.of_type(resource_type) if rid.startswith(prefix)]
        assert len(found) == 1, f"expected one {resource_type} with an id starting {prefix!r}, found {found}"
        return found[0]

    def documents_bucket(self) -> tuple[str, Resource]:
        """The one bucket of the Data stack (the Service stack has the web app's)."""
        found = {rid: r for rid, r in self.data_json["Resources"].items() if r["Type"] == "AWS::S3::Bucket"}
        assert len(found) == 1, f"expected one bucket in the Data stack, found {sorted(found)}"
        return next(iter(found.items()))

    def dependency_layer(self) -> tuple[str, Resource]:
        """DocuChat's layer (CDK's BucketDeployment brings a layer of its own, the AWS CLI)."""
        layer_id = self.with_id_prefix("AWS::Lambda::LayerVersion", "FunctionsDependencyLayer")
        return layer_id, self.resources[layer_id]

    def function(self, function_id: str) -> tuple[str, Resource]:
        return self.named("AWS::Lambda::Function", "FunctionName", physical_name(self.stage.name, function_id))

    def table(self, table_id: str) -> tuple[str, Resource]:
        return self.named("AWS::DynamoDB::Table", "TableName", physical_name(self.stage.name, table_id))

    def queue(self, queue_name: str) -> tuple[str, Resource]:
        return self.named("AWS::SQS::Queue", "QueueName", queue_name)

    def schedule(self, name: str) -> tuple[str, Resource]:
        return self.named("AWS::Scheduler::Schedule", "Name", physical_name(self.stage.name, name))

    def alarm(self, name: str) -> Resource:
        return self.named("AWS::CloudWatch::Alarm", "AlarmName", physical_name(self.stage.name, name))[1]

    # --- following references ----------------------------------------------------------------------------

    def targets(self, value: Any) -> set[str]:
        """Logical ids of every resource `value` refers to (Ref, Fn::GetAtt, cross-stack Fn::ImportValue)."""
        found: set[str] = set()
        for node in _walk(value):
            if "Ref" in node and node["Ref"] in self.resources:
                found.add(node["Ref"])
            elif "Fn::GetAtt" in node:
                found.add(node["Fn::GetAtt"][0])
            elif "Fn::ImportValue" in node:
                found |= self.targets(self._exports[node["Fn::ImportValue"]])
        return found

    def target(self, value: Any) -> str:
        found = self.targets(value)
        assert len(found) == 1, f"expected {value} to refer to one resource, it refers to {found}"
        return next(iter(found))

    def text_of(self, value: Any) -> str:
        """A string value with each reference in it written ${logical id} or ${logical id.Attribute}."""
        if isinstance(value, str):
            return value
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return str(separator).join(self.text_of(part) for part in parts)
        if "Fn::ImportValue" in value:
            return self.text_of(self._exports[value["Fn::ImportValue"]])
        if "Ref" in value:
            return f"${{{value['Ref']}}}"
        if "Fn::GetAtt" in value:
            resource_id, attribute = value["Fn::GetAtt"]
            return f"${{{resource_id}.{attribute}}}"
        raise AssertionError(f"no text for {value}")

    def policy_statements_of_role(self, role_id: str) -> list[dict[str, Any]]:
        statements = []
        for policy in self.of_type("AWS::IAM::Policy").values():
            if role_id in self.targets(props(policy)["Roles"]):
                statements.extend(props(policy)["PolicyDocument"]["Statement"])
        return statements

    def grants_of_role(self, role_id: str) -> dict[str, set[str]]:
        """Each action the role's policies allow, with the logical ids of the resources it is allowed on."""
        granted: dict[str, set[str]] = {}
        for statement in self.policy_statements_of_role(role_id):
            assert statement["Effect"] == "Allow", statement
            for action in actions_of(statement):
                granted.setdefault(action, set()).update(self.targets(statement["Resource"]))
        return granted

    def alarms_watching(self, namespace: str, metric_name: str, dimensions: dict[str, str]) -> list[Resource]:
        """Alarms whose metric (or one of whose math inputs) is namespace/metric_name with these dimensions.

        A dimension value may be a logical id: it matches a reference to that resource.
        """
        return [
            alarm
            for alarm in self.of_type("AWS::CloudWatch::Alarm").values()
            if any(self._is_metric(m, namespace, metric_name, dimensions) for m in _alarm_metrics(alarm))
        ]

    def _is_metric(self, metric: dict[str, Any], namespace: str, metric_name: str, dimensions: dict[str, str]) -> bool:
        if metric.get("Namespace") != namespace or metric.get("MetricName") != metric_name:
            return False
        actual = {d["Name"]: d["Value"] for d in metric.get("Dimensions", [])}
        if actual.keys() != dimensions.keys():
            return False
        return all(actual[k] == v or v in self.targets(actual[k]) for k, v in dimensions.items())


def props(resource: Resource) -> dict[str, Any]:
    return resource.get("Properties", {})


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def _alarm_metrics(alarm: Resource) -> Iterator[dict[str, Any]]:
    properties = props(alarm)
    if "MetricName" in properties:
        yield properties
    for query in properties.get("Metrics", []):
        if "MetricStat" in query:
            yield query["MetricStat"]["Metric"]


def _walk(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)


@cache
def synthesize(stage_name: str) -> SynthesizedStage:
    """Synthesizes a stage of cdk.json once per test session (it takes seconds) and parses its templates."""
    return synthesize_stage(load_stage(stage_name))


def synthesize_stage(stage: StageConfig) -> SynthesizedStage:
    """Synthesizes `stage`, which need not be in cdk.json; callers keep the result (see `synthesize`)."""
    app = App(context=dict(_TEST_CONTEXT))
    data, service = add_stage(app, stage)
    assembly = app.synth()  # the same assembly the templates come from (an app synthesizes once)
    return SynthesizedStage(
        stage=stage,
        data_template=Template.from_stack(data),
        service_template=Template.from_stack(service),
        data_stack_name=data.stack_name,
        service_stack_name=service.stack_name,
        data_termination_protection=bool(data.termination_protection),
        service_assets=_file_assets(Path(assembly.directory) / f"{service.artifact_id}.assets.json"),
        nag_findings=nag_findings(assembly),
    )


def _file_assets(manifest: Path) -> dict[str, str]:
    files = json.loads(manifest.read_text())["files"]
    return {asset_hash: asset["source"]["path"] for asset_hash, asset in files.items()}


def _dashboard(synthesized: SynthesizedStage, name: str) -> Resource:
    return synthesized.named(
        "AWS::CloudWatch::Dashboard", "DashboardName", physical_name(synthesized.stage.name, name)
    )[1]


def dashboard_body(synthesized: SynthesizedStage, name: str) -> str:
    """The dashboard's JSON body with references flattened to text, for looking up what it shows."""
    return json.dumps(props(_dashboard(synthesized, name))["DashboardBody"])


def dashboard_widgets(synthesized: SynthesizedStage, name: str) -> list[dict[str, Any]]:
    """The dashboard's widgets, parsed, each reference in them written as ${<logical id or pseudo parameter>}."""
    parts = props(_dashboard(synthesized, name))["DashboardBody"]["Fn::Join"][1]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        return "${%s}" % (part["Ref"] if str(part.get("Ref", "")).startswith("AWS::") else synthesized.target(part))

    widgets: list[dict[str, Any]] = json.loads("".join(text(part) for part in parts))["widgets"]
    return widgets
