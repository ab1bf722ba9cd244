"""Every stage is synthesized once per session; each test receives one stage's templates (dev, staging, prod)."""

from __future__ import annotations

import pytest

from tests.infrastructure.synthesized import SynthesizedStage, synthesize

STAGES = ("dev", "staging", "prod")


@pytest.fixture(scope="session", params=STAGES)
def synthesized(request: pytest.FixtureRequest) -> SynthesizedStage:
    """Given a stage from cdk.json, when its app is synthesized."""
    return synthesize(request.param)
