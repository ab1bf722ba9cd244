"""The child process of bench.cold_start: import a chat handler, answer one event, report timings, exit.

    python -m bench._cold_runner <handler module> <event.json>

Only the standard library is loaded before the timed import, so the import time is the handler's own. The
result is one line on stdout, after whatever the function logged: RESULT_MARKER followed by a JSON object.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

RESULT_MARKER = "COLD_START_RESULT "
BODY_CHARS = 500


def run(module_name: str, event: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    module = importlib.import_module(module_name)
    imported = time.perf_counter()

    # What the Lambda runtime hands the handler; built outside the timed parts (its deps are loaded by now).
    from local.lambda_runtime import LocalLambdaContext

    context = LocalLambdaContext("chat")
    asked = time.perf_counter()
    response = module.handler(event, context)
    answered = time.perf_counter()
    answered_at_ns = time.clock_gettime_ns(time.CLOCK_MONOTONIC)  # system-wide clock: the parent reads it too
    return {
        "import_ms": (imported - started) * 1000,
        "first_request_ms": (answered - asked) * 1000,
        "answered_at_ns": answered_at_ns,
        "status": response.get("statusCode"),
        "body": str(response.get("body") or "")[:BODY_CHARS],
        "peak_rss_kb": peak_rss_kb(),
    }


def peak_rss_kb() -> int:
    """This process's own peak resident memory (VmHWM). Not getrusage's ru_maxrss, and not the parent's wait4:
    on Linux those carry the high-water mark of the process that forked it across fork and exec, so every child
    of a large benchmark process reported the benchmark's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench._cold_runner <handler module> <event.json>", file=sys.stderr)
        return 2
    module_name, event_path = argv
    with open(event_path, encoding="utf-8") as file:
        event = json.load(file)
    result = run(module_name, event)
    sys.stdout.write(RESULT_MARKER + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
