"""The web app's security headers: one definition for CloudFront's response headers policy and for `make dev`.

The app runs no inline script and loads nothing from elsewhere; it may talk only to the API, the streaming URL
and the documents bucket (presigned uploads). Everything a document or an answer holds is shown as text or
through the sanitiser (docs/decisions/0009-web-app.md).
"""

from __future__ import annotations

from collections.abc import Sequence

# The app's own files only. `style-src 'self'`: no inline styles either, so an injected `style=` does nothing.
_DIRECTIVES = (
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "font-src 'self'",
    "manifest-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "object-src 'none'",
)

# Sent with every file of the app, beside the Content-Security-Policy.
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def content_security_policy(connect_to: Sequence[str]) -> str:
    """The policy, with `connect-src` limited to the app's own origin and `connect_to` (origins, or URLs)."""
    sources = " ".join(["'self'", *connect_to])
    return "; ".join([*_DIRECTIVES, f"connect-src {sources}"])
