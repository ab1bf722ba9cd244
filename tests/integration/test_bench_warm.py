"""bench/warm.py's machinery: a few warm chats, counted and timed. The figures come from `make bench`."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from bench.warm import ModelClock, run


def test_a_few_warm_chats_are_timed_without_the_model_and_their_aws_calls_counted(tmp_path: Path) -> None:
    report = run(chats=5, out=tmp_path / "warm.json")
    assert (tmp_path / "warm.json").is_file()
    assert 0 < report["p50_ms"] <= report["p99_ms"]
    calls = report["aws_calls_by_operation"]
    # Every chat writes its conversation and sends its usage: counted on the function's own clients
    assert calls["dynamodb.BatchWriteItem"] >= 1 and calls["sqs.SendMessageBatch"] >= 1
    assert report["aws_calls_per_chat"] == sum(calls.values())
    # The split: moto's round trips inside botocore's calls, inside the handler's time without the model
    assert 0 < report["aws_wait_ms_p50"] < report["aws_calls_ms_p50"] < report["p50_ms"]
    assert report["own_python_ms_p50"] > 0
    assert set(report["aws_ms_per_call_by_operation"]) == set(calls)
    assert report["log_bytes_per_chat"] > 100  # every chat logs its request line and its metrics
    # Repeated questions are answered by the response cache: no new entry is written with their turns
    repeated = report["repeated_question"]
    assert repeated["aws_calls_per_chat"] == sum(repeated["aws_calls_by_operation"].values())
    assert (
        report["dynamodb_items_per_chat"]["batch_write_items"]
        > repeated["dynamodb_items_per_chat"]["batch_write_items"]
    )


def test_the_model_clock_sums_calls_made_on_other_threads() -> None:
    # The handler calls OpenAI on FastAPI's worker threads; a per-thread sum read from the bench's thread was 0.
    clock = ModelClock()
    worker = threading.Thread(target=clock.timed(lambda: time.sleep(0.01)))
    worker.start()
    worker.join()
    assert clock.take() >= 0.01
    assert clock.take() == 0.0
