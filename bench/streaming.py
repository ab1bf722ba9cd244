"""Time to the first token against the whole answer, streamed and buffered, with a slow model behind DocuChat.

    python -m bench.streaming [--runs 5] [--chunk-delay 0.05] [--out bench/results/streaming.json]

A local OpenAI-compatible server writes a word every --chunk-delay seconds (an answer of about 60 words takes
~3 s); `python -m local` answers POST /v1/chat through it. Streamed (`stream: true`), the first `delta` event
should arrive at under a tenth of the total; buffered, the first byte is the whole answer.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from bench._local import tenant_with_documents
from bench._report import write_report
from local.fake_openai import REPLY_PREFIX, FakeOpenAI
from local.process import LocalProcess

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "streaming.json"
POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."
ANSWER_WORDS = 60


def long_answer(messages: Sequence[dict[str, Any]]) -> str:
    return REPLY_PREFIX + " ".join(f"word{n}" for n in range(ANSWER_WORDS))


def streamed(url: str, key: str, question: str) -> tuple[float, float]:
    """(seconds to the first delta, seconds to the end) of a streamed chat."""
    began = time.perf_counter()
    first = None
    body = {"message": question, "stream": True, "use_documents": False}
    with httpx.stream(
        "POST", f"{url}/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as reply:
        for line in reply.iter_lines():
            if line == "event: delta" and first is None:
                first = time.perf_counter() - began
    total = time.perf_counter() - began
    return (first if first is not None else total), total


def buffered(url: str, key: str, question: str) -> float:
    began = time.perf_counter()
    body = {"message": question, "use_documents": False}
    httpx.post(f"{url}/v1/chat", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=120).raise_for_status()
    return time.perf_counter() - began


def run(runs: int, chunk_delay: float, out: Path | None) -> dict[str, Any]:
    admin_key = "dca_bench_" + secrets.token_urlsafe(12)
    with (
        FakeOpenAI(chunk_delay_seconds=chunk_delay, responder=long_answer) as upstream,
        tempfile.TemporaryDirectory() as logs,
    ):
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream.base_url,
            "LLM_CACHE_TTL": "0",
            "DOCUCHAT_EMBEDDER": "local",
        }
        with LocalProcess(Path(logs) / "run.log", admin_key, env=env) as runtime:
            key = tenant_with_documents(runtime.url, admin_key, {"Support": POLICY})
            streamed(runtime.url, key, "warm up")  # the first request pays for loading the app's lazy parts
            pairs = [streamed(runtime.url, key, f"question {n}") for n in range(runs)]
            totals = [buffered(runtime.url, key, f"buffered {n}") for n in range(runs)]
    first = statistics.median(p[0] for p in pairs)
    total = statistics.median(p[1] for p in pairs)
    result = {
        "benchmark": "streaming",
        "upstream": {"words": ANSWER_WORDS, "chunk_delay_seconds": chunk_delay},
        "runs": runs,
        "streamed": {"first_token_ms": round(first * 1000, 1), "total_ms": round(total * 1000, 1)},
        "buffered": {"first_byte_ms": round(statistics.median(totals) * 1000, 1)},
        "first_token_share_of_total": round(first / total, 3),
        "goal": "streamed first token under a tenth of the total",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if out:
        write_report(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--chunk-delay", type=float, default=0.05)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    print(json.dumps(run(args.runs, args.chunk_delay, args.out), indent=2))


if __name__ == "__main__":
    main()
