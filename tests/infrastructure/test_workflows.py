"""The GitHub workflows (.github/workflows): clean under zizmor and actionlint, and holding what matters for
a deploy: an OIDC role and no stored keys, least privilege, every action pinned to a commit, every stage covered."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
STAGES = sorted(json.loads((ROOT / "cdk.json").read_text())["context"]["stages"])
# owner/repo[/path]@<a full commit SHA>  # vX.Y.Z
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}\s+#\s+v\d+\.\d+\.\d+$")
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(.+)$", re.MULTILINE)
LOCAL = re.compile(r"^\./\.github/workflows/[\w-]+\.yml(\s+#.*)?$")


@cache
def workflow(name: str) -> dict[str, Any]:
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    loaded["on"] = loaded.pop(True, loaded.get("on"))  # YAML 1.1 reads the key `on` as true
    return loaded


def all_workflows() -> list[str]:
    return sorted(path.name for path in WORKFLOWS.glob("*.yml"))


def tool(name: str) -> str:
    """The tool from the virtual environment the tests run in, or else from PATH; skips when neither has it."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        hint = {"zizmor": "make install", "actionlint": "pip install -r requirements-workflows.txt"}[name]
        pytest.skip(f"{name} is not installed ({hint}); make lint-workflows says the same")
    return found


def steps(name: str, job: str) -> list[dict[str, Any]]:
    return list(workflow(name)["jobs"][job]["steps"])


def test_the_workflows_are_the_three_documented() -> None:
    assert all_workflows() == ["ci.yml", "deploy-stage.yml", "deploy.yml"]


def test_zizmor_finds_nothing() -> None:
    run = subprocess.run(
        [tool("zizmor"), "--offline", "--format", "json", str(WORKFLOWS)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert json.loads(run.stdout) == []


def test_actionlint_finds_nothing() -> None:
    run = subprocess.run([tool("actionlint")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("name", all_workflows())
def test_every_action_is_pinned_to_a_commit_with_its_version_named(name: str) -> None:
    uses = [ref.strip() for ref in USES.findall((WORKFLOWS / name).read_text())]
    assert uses, f"{name} uses no action?"
    unpinned = [ref for ref in uses if not (PINNED.match(ref) or LOCAL.match(ref))]
    assert unpinned == [], f"pin to a full commit SHA with a `# vX.Y.Z` comment: {unpinned}"


@pytest.mark.parametrize("name", all_workflows())
def test_permissions_start_from_nothing_and_no_job_gets_write_all(name: str) -> None:
    assert workflow(name)["permissions"] == {}
    for job_id, job in workflow(name)["jobs"].items():
        granted = job.get("permissions", {})
        assert isinstance(granted, dict), f"{name}/{job_id}: permissions as a map, never read-all or write-all"
        writes = {scope for scope, level in granted.items() if level == "write"}
        assert writes <= {"id-token"}, f"{name}/{job_id} may write {writes}"
        if "id-token" in writes:
            assert name.startswith("deploy"), f"only deploys get an OIDC token, not {name}/{job_id}"


@pytest.mark.parametrize("name", all_workflows())
def test_no_checkout_leaves_its_token_behind(name: str) -> None:
    for job in workflow(name)["jobs"].values():
        for step in job.get("steps", []):
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is False


def test_ci_lints_tests_and_synthesizes_every_stage_of_cdk_json() -> None:
    jobs = workflow("ci.yml")["jobs"]
    assert set(workflow("ci.yml")["on"]) == {"pull_request", "push"}
    assert workflow("ci.yml")["on"]["push"]["branches"] == ["main"]
    assert "make lint" in [step.get("run") for step in jobs["lint"]["steps"]]
    assert "make test" in [step.get("run") for step in jobs["test"]["steps"]]
    # the stage list is read from cdk.json, so a new stage is synthesized without touching the workflow
    assert "cdk.json" in steps("ci.yml", "stages")[-1]["run"]
    assert jobs["synth"]["strategy"]["matrix"]["stage"] == "${{ fromJSON(needs.stages.outputs.stages) }}"
    synth = steps("ci.yml", "synth")[-1]
    assert synth["run"] == 'make synth STAGE="$STAGE"' and synth["env"]["STAGE"] == "${{ matrix.stage }}"


def test_ci_sets_up_what_make_test_needs_on_a_fresh_runner() -> None:
    used = {step.get("uses", "").split("@")[0]: step.get("with", {}) for step in steps("ci.yml", "test")}
    assert used["actions/setup-python"]["python-version"].split() == ["3.13", "3.11"]  # the last is the default
    assert int(used["actions/setup-java"]["java-version"]) >= 17  # DynamoDB Local
    assert "actions/setup-node" in used
    assert workflow("ci.yml")["jobs"]["test"]["env"]["DOCUCHAT_CHROMIUM"]


def test_a_stage_deploys_in_its_environment_through_an_oidc_role_then_is_smoke_tested_and_pruned() -> None:
    [job] = workflow("deploy-stage.yml")["jobs"].values()
    assert job["environment"] == "${{ inputs.stage }}"
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    assert job["concurrency"]["cancel-in-progress"] is False
    [credentials] = [s for s in job["steps"] if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert credentials["with"]["role-to-assume"] == "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials["with"])
    runs = [step["run"] for step in job["steps"] if "run" in step]
    assert runs[-3:] == [
        'make deploy STAGE="$STAGE"',
        '.venv/bin/python -m tools.smoke --stage "$STAGE"',
        '.venv/bin/python -m tools.prune_versions --stage "$STAGE" --keep 3',
    ]
    assert job["steps"].index(credentials) < [step.get("run") for step in job["steps"]].index(runs[-3])


def test_no_workflow_holds_aws_keys() -> None:
    for name in all_workflows():
        text = (WORKFLOWS / name).read_text()
        assert "aws-secret-access-key" not in text and "AWS_SECRET_ACCESS_KEY" not in text, name


def test_a_tag_deploys_staging_then_prod_and_a_manual_run_any_stage_of_cdk_json() -> None:
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"] == {"tags": ["v*"]}
    assert sorted(deploy["on"]["workflow_dispatch"]["inputs"]["stage"]["options"]) == STAGES
    jobs = deploy["jobs"]
    assert {job["uses"] for job in jobs.values()} == {"./.github/workflows/deploy-stage.yml"}
    assert jobs["staging"]["with"]["stage"] == "staging" and jobs["staging"]["if"] == "github.event_name == 'push'"
    assert jobs["prod"]["with"]["stage"] == "prod" and jobs["prod"]["needs"] == "staging"
    assert jobs["chosen"]["with"]["stage"] == "${{ inputs.stage }}"
    for job in jobs.values():  # a called workflow gets no more than its caller grants
        assert job["permissions"]["id-token"] == "write"


def test_make_deploy_runs_the_pinned_cdk_cli_without_prompts() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "deploy --all --require-approval never --no-notices -c stage=$(STAGE)" in makefile
    assert "aws-cdk" in json.loads((ROOT / "package.json").read_text())["devDependencies"]
