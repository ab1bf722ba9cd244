"""`make reconcile DATE=YYYY-MM-DD`: check that every tenant's invoiced tokens equal its metered events.

Asks a running DocuChat (local or deployed) through its admin API, prints one line per tenant, and exits
1 when any tenant does not reconcile (2 when the check itself could not run).

    DOCUCHAT_API_URL    the API's base URL (default http://127.0.0.1:8000, what `make dev` serves)
    DOCUCHAT_ADMIN_KEY  the admin key
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import date
from typing import Any


def fetch(api_url: str, admin_key: str, day: date) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{api_url.rstrip('/')}/v1/admin/reconciliation?date={day.isoformat()}",
        headers={"Authorization": f"Bearer {admin_key}", "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        report: dict[str, Any] = json.loads(response.read())
    return report


def render(report: dict[str, Any]) -> str:
    rows = [
        f"{'tenant':<20} {'status':<9} {'events':>8} {'metered':>12} {'counted':>12} {'invoiced':>12} {'carried':>10}"
    ]
    for t in report["tenants"]:
        rows.append(
            f"{t['tenant_id']:<20} {t['status']:<9} {t['metered_events']:>8,} {t['metered_tokens']:>12,} "
            f"{t['counted_tokens']:>12,} {t['invoiced_tokens']:>12,} {t['carried_tokens']:>10,}"
        )
    verdict = "reconciled" if report["ok"] else f"{report['mismatches']} tenant(s) do NOT reconcile"
    return "\n".join([*rows, f"{report['period']}: {len(report['tenants'])} tenant(s) with usage, {verdict}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("date", type=date.fromisoformat, help="the billing day, YYYY-MM-DD")
    args = parser.parse_args(argv)
    api_url = os.environ.get("DOCUCHAT_API_URL", "http://127.0.0.1:8000")
    admin_key = os.environ.get("DOCUCHAT_ADMIN_KEY")
    if not admin_key:
        print("DOCUCHAT_ADMIN_KEY is not set (make dev prints it)", file=sys.stderr)
        return 2
    try:
        report = fetch(api_url, admin_key, args.date)
    except urllib.error.HTTPError as error:
        print(f"{api_url} answered {error.code}: {error.read().decode(errors='replace')[:500]}", file=sys.stderr)
        return 2
    except (urllib.error.URLError, TimeoutError) as error:
        print(f"cannot reach {api_url}: {error}", file=sys.stderr)
        return 2
    print(render(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
