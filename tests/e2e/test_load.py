"""`make load`, small: 8 clients for a few seconds against a fresh `python -m local`; no 5xx, exact money.

Speed is the benchmark's business (bench/results/load.json); this checks only what must hold at any speed.
"""

from __future__ import annotations

from pathlib import Path

from bench.load import LoadOptions, run


def test_a_short_load_gets_no_server_error_and_the_money_adds_up(tmp_path: Path) -> None:
    # When 8 clients chat, list, read usage and send bad requests for a few seconds
    result = run(
        LoadOptions(clients=8, seconds=6, tenants=2, documents=2, single_client_seconds=0, out=None),
        progress=lambda _: None,
        log_dir=tmp_path,
    )

    # Then nothing failed on the server's side or dropped, and bad requests all got their 4xx
    assert result["requests"] > 8
    assert result["server_errors"] == 0 and result["dropped_connections"] == 0, result["errors_by_status"]
    assert result["errors"] == 0, result["errors_by_status"]
    assert result["by_operation"]["chat"]["requests"] > 0

    # And every tenant was metered exactly what its replies reported, and invoiced exactly what was metered
    money = result["money_check"]
    assert money["ok"], money
    assert all(row["reported_chat_tokens"] > 0 for row in money["tenants"] if row["chats"])

    # And Ctrl-C stopped the runtime and DynamoDB Local
    assert result["stop_seconds"] is not None
