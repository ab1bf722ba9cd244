"""Chromium for the web app's tests: Debian's own browser, driven by Playwright, kept on 127.0.0.1.

Playwright's bundled browser download cannot be reached, so the system's Chromium is launched by its path
(tools/system-packages.sh installs it): DOCUCHAT_CHROMIUM, or `chromium` on PATH.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every host name but loopback resolves to nothing: a page that tried to reach the internet would fail loudly.
KEEP_ON_LOOPBACK = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost"


def chromium_path() -> str:
    for candidate in (os.environ.get("DOCUCHAT_CHROMIUM"), "/usr/lib/chromium/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file():
            return candidate
    raise RuntimeError(
        "the browser tests need Chromium: `make install` installs it with apt (Debian: apt-get install chromium), "
        "or set DOCUCHAT_CHROMIUM to a Chromium or Chrome binary"
    )


def launch_options() -> dict[str, Any]:
    return {"executable_path": chromium_path(), "args": [KEEP_ON_LOOPBACK, "--no-sandbox"], "headless": True}


@dataclass
class ConsoleWatch:
    """Collects the page's console errors and uncaught exceptions; a test fails on any it did not expect."""

    errors: list[str] = field(default_factory=list)
    expected: list[re.Pattern[str]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", lambda message: message.type == "error" and self.errors.append(message.text))
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))

    def expect(self, pattern: str) -> None:
        """An error the test provokes on purpose (a refused key logs its 401)."""
        self.expected.append(re.compile(pattern))

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(p.search(e) for p in self.expected)]


# WCAG 2 contrast of every visible text, as a function to evaluate in the page (tests/support/contrast.js).
# Its leading comment lines are dropped: Playwright calls what the text evaluates to.
CONTRAST_FAILURES = "\n".join(
    line for line in (Path(__file__).parent / "contrast.js").read_text().splitlines() if not line.startswith("//")
)
