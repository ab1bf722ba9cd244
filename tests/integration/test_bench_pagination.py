"""bench/pagination.py runs, small: both tenants' first pages come back full and timed."""

from __future__ import annotations

import pytest

from bench.pagination import PAGE, run

pytestmark = pytest.mark.dynamodb_local


def test_the_pagination_benchmark_measures_both_tenants() -> None:
    result = run(documents=PAGE + 10, out=None)
    assert result["results"]["small"]["documents"] == 10
    assert result["results"]["large"]["documents"] == PAGE + 10
    assert all(r["first_page_ms"] > 0 and r["read_all_then_sort_ms"] > 0 for r in result["results"].values())
