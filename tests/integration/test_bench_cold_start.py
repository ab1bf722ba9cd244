"""The cold-start benchmark's machinery works end to end. Nothing here is timed: the figures come from `make bench`."""

from __future__ import annotations

import json
import site
from pathlib import Path

import pytest

from bench.cold_start import (
    OURS,
    ColdStartFailed,
    chat_event,
    child_environment,
    cold_start,
    emulated_backend,
    run_benchmark,
)

SUMMARY_FIELDS = {
    "median_ms",
    "min_ms",
    "max_ms",
    "to_answer_ms_median",
    "import_ms_median",
    "first_request_ms_median",
    "peak_rss_mb_median",
}


def test_one_run_of_each_handler_answers_and_writes_the_report(tmp_path: Path) -> None:
    # Given an empty results folder
    out = tmp_path / "results" / "cold_start.json"
    progress: list[str] = []

    # When the benchmark runs one pair of fresh processes, without warm-up
    returned = run_benchmark(runs=1, warmup=0, out=out, progress=progress.append)

    # Then the report on disk is the one returned, and has every field
    report = json.loads(out.read_text())
    assert report == returned
    assert report["benchmark"] == "cold_start"
    assert report["runs"] == 1
    assert set(report["machine"]) >= {"cpus", "python"}
    assert report["goal_ratio"] == 0.4 and report["notes"]
    for side in ("ours", "naive", "ours_without_bytecode"):
        assert set(report[side]) >= SUMMARY_FIELDS, side
        # And both handlers answered the chat request
        assert report[side]["statuses"] == [200], side
        assert report[side]["median_ms"] >= report[side]["to_answer_ms_median"] > report[side]["import_ms_median"] > 0
        assert report[side]["peak_rss_mb_median"] > 0
    assert report["ratio"] > 0 and report["ratio_to_exit"] > 0 and report["ratio_without_bytecode"] > 0
    assert report["ratio"] == round(report["ours"]["to_answer_ms_median"] / report["naive"]["to_answer_ms_median"], 3)
    assert sum("run 1/1" in line for line in progress) == 3
    # And each child measured its own memory, not the benchmark process's (which holds moto and more)
    assert all(report[side]["peak_rss_mb_median"] < 400 for side in ("ours", "naive"))


def test_a_child_that_does_not_answer_200_fails_the_benchmark_loudly(tmp_path: Path) -> None:
    # Given the benchmark's backend, and a chat event signed with a key no tenant has
    with emulated_backend() as backend:
        event = chat_event("dc_t0123456789_k0123456789_not-a-real-secret-at-all", 0)

        # When a fresh process answers it, Then the benchmark stops and says what came back
        with pytest.raises(ColdStartFailed, match="401"):
            # (this machine's packages, not the Lambda-like path the benchmark builds: only the failure matters)
            env = {**child_environment(backend.function_env), "PYTHONPATH": site.getsitepackages()[0]}
            cold_start(OURS, env, event, tmp_path / "bad-key")
