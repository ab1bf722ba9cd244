"""The web app under `make dev`: web/ served at `/` on the API's own origin, as CloudFront serves it in AWS.

API paths go to the chat app; everything else is the web app's: its files, a generated `config.json`, and
`index.html` for the app's own routes (/chat, /documents, ...). The app's files carry the same security headers
as the CloudFront response headers policy (stacks/web_policy.py).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.responses import FileResponse, PlainTextResponse, Response

from stacks.web_policy import SECURITY_HEADERS, content_security_policy

WEB_ROOT = Path(__file__).resolve().parent.parent / "web"
API_PREFIXES = ("/v1/", "/health", "/docs", "/redoc", "/openapi.json")
# Locally every file is checked again on each load, so an edit shows at the next reload.
_CACHE = {"Cache-Control": "no-cache"}
# HSTS over plain-HTTP loopback would only be ignored; the rest applies as in AWS.
_LOCAL_HEADERS = {name: value for name, value in SECURITY_HEADERS.items() if name != "Strict-Transport-Security"}


def is_api_path(path: str) -> bool:
    return path == "/v1" or path.startswith(API_PREFIXES)


class WithWebApp:
    """An ASGI app: the API, with the web app in front of every path that is not the API's."""

    def __init__(self, api: Any, config: dict[str, Any], connect_to: Sequence[str] = (), root: Path = WEB_ROOT) -> None:
        self.api = api
        self.root = root.resolve()
        self.config = json.dumps(config).encode()
        self.headers = {**_LOCAL_HEADERS, "Content-Security-Policy": content_security_policy(connect_to), **_CACHE}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or is_api_path(scope["path"]):
            await self.api(scope, receive, send)
            return
        response = self.respond(scope["method"], scope["path"])
        await response(scope, receive, send)

    def respond(self, method: str, path: str) -> Response:
        if method not in ("GET", "HEAD"):
            return PlainTextResponse("method not allowed", status_code=405, headers={"Allow": "GET, HEAD"})
        if path == "/config.json":
            return Response(self.config, media_type="application/json", headers=self.headers)
        file = self._file(path)
        if file is None:
            return PlainTextResponse("not found", status_code=404, headers=self.headers)
        return FileResponse(file, headers=self.headers)

    def _file(self, path: str) -> Path | None:
        """The file a path names, inside web/ only; a path without an extension is one of the app's routes."""
        parts = [part for part in path.split("/") if part]
        if any(part.startswith(".") or "\\" in part for part in parts):
            return None
        if not parts or "." not in parts[-1]:
            return self.root / "index.html"
        candidate = (self.root / "/".join(parts)).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate
