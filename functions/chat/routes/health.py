"""Liveness and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from functions.chat.deps import Services
from functions.chat.openapi import PUBLIC_ERRORS

router = APIRouter(tags=["health"], responses=PUBLIC_ERRORS)


@router.get("/health")
def health(services: Services) -> dict[str, str]:
    return {"status": "ok", "stage": services.settings.stage}


@router.get("/health/ready")
def ready(services: Services) -> JSONResponse:
    """Checks DynamoDB, SQS and the LLM settings, with one quick call each; 503 when a dependency is not usable."""
    checks: dict[str, Any] = services.aws.probes.check()
    settings = services.settings
    checks["llm"] = (
        f"openai ({settings.llm_model}{', ' + settings.openai_base_url if settings.openai_base_url else ''})"
        if settings.llm_enabled
        else "extractive (no OPENAI_API_KEY)"
    )
    ok = all(not str(v).startswith("failed") for v in checks.values())
    return JSONResponse({"status": "ready" if ok else "not_ready", "checks": checks}, status_code=200 if ok else 503)
