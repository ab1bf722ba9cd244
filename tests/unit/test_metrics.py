"""The custom metrics: named in one module, with few dimensions, never a tenant's, a key's or a user's."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared import observability
from shared.metering import _count_tokens
from shared.models import UsageEvent, UsageKind

ROOT = Path(__file__).resolve().parents[2]
CODE = [*sorted((ROOT / "shared").rglob("*.py")), *sorted((ROOT / "functions").rglob("*.py"))]
OBSERVABILITY = ROOT / "shared" / "observability.py"


def _calls(path: Path) -> Iterator[ast.Call]:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def _name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _metric_calls() -> Iterator[tuple[Path, ast.Call]]:
    """Every count(...) of the code (str.count and numpy's take no dimensions and name no metric constant)."""
    for path in CODE:
        imported = "observability import" in path.read_text() and "count" in path.read_text()
        for call in _calls(path):
            if imported and isinstance(call.func, ast.Name) and call.func.id == "count":
                yield path, call


def test_the_code_emits_metrics_only_through_observability_count() -> None:
    # When the code is scanned for the Powertools calls that add metrics or dimensions
    direct = [
        f"{path.relative_to(ROOT)}:{call.lineno} {_name(call)}"
        for path in CODE
        if path != OBSERVABILITY
        for call in _calls(path)
        if _name(call) in {"add_metric", "add_dimension", "single_metric", "set_default_dimensions"}
    ]
    # Then there are none outside shared/observability.py, whose count() refuses tenants' dimensions
    assert direct == []


def test_no_metric_has_a_tenant_key_or_user_dimension() -> None:
    # Given every count(...) call of the functions and shared/
    calls = list(_metric_calls())
    assert len(calls) > 20  # the scan finds the code's metrics (it would pass vacuously otherwise)
    # Then none names a dimension after a tenant, a key or a user, nor passes dimensions it does not name
    offending = [
        f"{path.relative_to(ROOT)}:{call.lineno} {keyword.arg}"
        for path, call in calls
        for keyword in call.keywords
        if keyword.arg is None or any(word in keyword.arg.lower() for word in ("tenant", "key", "user", "sub"))
    ]
    assert offending == []


def _constant_names(argument: ast.expr | None) -> list[str] | None:
    """The constants a metric argument names (`A` or `A if ... else B`); None when it is anything else."""
    if isinstance(argument, ast.Name):
        return [argument.id]
    if isinstance(argument, ast.IfExp):
        body, orelse = _constant_names(argument.body), _constant_names(argument.orelse)
        return body + orelse if body is not None and orelse is not None else None
    return None


def test_each_metric_is_named_by_a_constant_of_observability() -> None:
    # Given every count(...) call's metric argument
    named = {f"{path.relative_to(ROOT)}:{call.lineno}": _constant_names(call.args[0]) for path, call in _metric_calls()}
    # Then it is a constant (not a string written in place) that shared/observability.py defines
    assert [where for where, names in named.items() if names is None] == []
    unknown = {name for names in named.values() for name in names or [] if getattr(observability, name, None) is None}
    assert unknown == set()


@pytest.mark.parametrize("dimension", ["tenant_id", "tenant", "key_id", "user", "sub"])
def test_count_refuses_a_per_tenant_dimension(dimension: str) -> None:
    with pytest.raises(ValueError, match="DynamoDB"):
        observability.count(observability.CHAT_REQUESTS, 1, **{dimension: "t0123"})


def test_metering_counts_tokens_by_model_and_kind(capsys: pytest.CaptureFixture[str]) -> None:
    # Given a chat answer's event and a question's embedding, metered in one group of their model
    def event(kind: UsageKind, tokens_in: int, tokens_out: int) -> UsageEvent:
        return UsageEvent(
            event_id=f"e-{kind.value}-0001",
            tenant_id="t0123456789",
            kind=kind,
            model="gpt-4o-mini",
            input_tokens=tokens_in,
            output_tokens=tokens_out,
            occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        )

    capsys.readouterr()
    # When their tokens are counted
    _count_tokens("gpt-4o-mini", [event(UsageKind.CHAT, 100, 20), event(UsageKind.EMBEDDING, 7, 0)])
    # Then each kind is written with its model, and only those two dimensions besides the service
    written = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    by_kind = {line["kind"]: line for line in written}
    assert {kind: line[observability.TOKENS_METERED] for kind, line in by_kind.items()} == {
        "input": [100],
        "output": [20],
        "embedding": [7],
    }
    for line in written:
        assert line["model"] == "gpt-4o-mini"
        assert line["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["model", "kind", "service"]]


def test_no_two_metric_constants_share_a_name() -> None:
    names = [value for constant, value in vars(observability).items() if constant.isupper() and isinstance(value, str)]
    assert len(names) > 20
    assert len(names) == len(set(names))


def test_the_tracer_patches_boto3_so_sqs_messages_carry_the_trace() -> None:
    # Then: Powertools patches botocore (with the other modules X-Ray knows) when the Tracer is built, so a traced
    # function's SQS sends carry AWSTraceHeader and the consumer's segment joins the producer's trace
    assert observability.tracer._config["auto_patch"] is True
    assert observability.tracer._config["patch_modules"] is None  # None: every supported module, botocore among them
