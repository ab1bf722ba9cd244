"""The response cache's hit path against a miss: the same questions asked twice, with a model that takes its time.

    python -m bench.cache [--questions 10] [--model-seconds 0.5] [--out bench/results/cache.json]

A local OpenAI-compatible server answers after --model-seconds (a model's latency); `python -m local` runs with
LLM_CACHE_TTL set. Each question is asked once (a miss: retrieval, the model, metering, the cache write) and
again (a hit: retrieval and the cache read, metered as cached, no model call).
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
from pathlib import Path
from typing import Any

import httpx

from bench._local import tenant_with_documents
from bench._report import write_report
from local.fake_openai import FakeOpenAI
from local.process import LocalProcess

RESULTS_FILE = Path(__file__).resolve().parent / "results" / "cache.json"
POLICY = "Our support line is open from 9 to 17 on working days. Call 021-1234 for urgent help."


def ask(url: str, key: str, question: str) -> tuple[float, bool]:
    began = time.perf_counter()
    reply = httpx.post(
        f"{url}/v1/chat", json={"message": question}, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    reply.raise_for_status()
    return time.perf_counter() - began, bool(reply.json()["cached"])


def run(questions: int, model_seconds: float, out: Path | None) -> dict[str, Any]:
    admin_key = "dca_bench_" + secrets.token_urlsafe(12)
    with FakeOpenAI(delay_seconds=model_seconds) as upstream, tempfile.TemporaryDirectory() as logs:
        env = {
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_BASE_URL": upstream.base_url,
            "LLM_CACHE_TTL": "3600",
            "DOCUCHAT_EMBEDDER": "local",
        }
        with LocalProcess(Path(logs) / "run.log", admin_key, env=env) as runtime:
            key = tenant_with_documents(runtime.url, admin_key, {"Support": POLICY})
            ask(runtime.url, key, "warm up: when is support open?")
            asked = [f"When is the support line open, case {n}?" for n in range(questions)]
            misses = [ask(runtime.url, key, q) for q in asked]
            hits = [ask(runtime.url, key, q) for q in asked]
            calls = sum(1 for path, _, _ in upstream.requests if path == "/v1/chat/completions")
    miss_ms = statistics.median(t for t, _ in misses) * 1000
    hit_ms = statistics.median(t for t, _ in hits) * 1000
    result = {
        "benchmark": "cache",
        "questions": questions,
        "model_seconds": model_seconds,
        "miss": {"p50_ms": round(miss_ms, 1), "cached": sum(c for _, c in misses)},
        "hit": {"p50_ms": round(hit_ms, 1), "cached": sum(c for _, c in hits)},
        "speedup": round(miss_ms / hit_ms, 1),
        "model_calls": calls,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }
    if out:
        write_report(out, result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--model-seconds", type=float, default=0.5)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    args = parser.parse_args()
    print(json.dumps(run(args.questions, args.model_seconds, args.out), indent=2))


if __name__ == "__main__":
    main()
