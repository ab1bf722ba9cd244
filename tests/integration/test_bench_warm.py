"""bench/warm.py's machinery: a few warm chats, counted and timed. The figures come from `make bench`."""

from __future__ import annotations

from pathlib import Path

from bench.warm import run


def test_a_few_warm_chats_are_timed_without_the_model_and_their_aws_calls_counted(tmp_path: Path) -> None:
    report = run(chats=5, out=tmp_path / "warm.json")
    assert (tmp_path / "warm.json").is_file()
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    calls = report["aws_calls_by_operation"]
    # Every chat writes its conversation and sends its usage: counted on the function's own clients
    assert calls["dynamodb.BatchWriteItem"] >= 1 and calls["sqs.SendMessageBatch"] >= 1
    assert report["aws_calls_per_chat"] == sum(calls.values())
