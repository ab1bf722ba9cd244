"""The local embedder's speed: texts per second of all-MiniLM-L6-v2 in numpy, before and after its fast path.

    python -m bench.embedder [--rounds 2] [--repeats 2] [--texts 64] [--batch-sizes 1 32] [--baseline f954ba4]
                             [--out bench/results/embedder.json]

Texts are real chunks: the quality set's corpus (bench/quality/sets/own/corpus/*.md) cut by shared/chunking.py
at its default 220 estimated tokens, headings folded into the text so that chunks fill up (otherwise most end
at the next heading, at half the size). The first --texts of them are embedded again and again.

"before" is shared/minilm.py as it was at --baseline (read with `git show`, loaded as a module of its own);
"after" is the working tree's. Each configuration runs in a child process of its own, since OpenBLAS reads
OPENBLAS_NUM_THREADS when numpy is imported and the fast path changes BLAS's threads for its whole process:

- before_1_thread: OPENBLAS_NUM_THREADS=1 (one core);
- before_blas_threads: OpenBLAS's default, a thread a core (how the service ran);
- after_1_worker: OPENBLAS_NUM_THREADS=1 and one pass at a time (one core);
- after_default: the new default, one pass a core side by side, BLAS single-threaded.

Configurations alternate in each of --rounds rounds, so drift in the machine's load hits all alike; a figure is
the median of rounds x --repeats samples. The batch size is the embedder's `batch_size`, the rows of one
forward pass (LocalEmbedder uses 32; a question is a batch of 1). Scenario "as_is" is the machine as it is
(the report records its load average: other work on it slows everything, OpenBLAS's own threads most);
"one_core_busy" adds a process that keeps one core busy while it runs (a noisy neighbour), at batch size 32.

min_cosine is the lowest cosine between a text's vector before and after (stored indexes stay valid while it is
at least 0.9999).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench._report import write_report

if TYPE_CHECKING:
    from collections.abc import Iterator

    from shared.chunking import TextChunk

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_FILE = REPO_ROOT / "bench" / "results" / "embedder.json"
CORPUS = REPO_ROOT / "bench" / "quality" / "sets" / "own" / "corpus"
BASELINE = "f954ba4"  # the last commit of shared/minilm.py before its fast path
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")
# name: (implementation, OPENBLAS_NUM_THREADS or None for OpenBLAS's default, workers or None for the default)
CONFIGURATIONS: dict[str, tuple[str, str | None, int | None]] = {
    "before_1_thread": ("before", "1", None),
    "before_blas_threads": ("before", None, None),
    "after_1_worker": ("after", "1", 1),
    "after_default": ("after", None, None),
}
SCENARIOS = ("as_is", "one_core_busy")
BUSY_BATCH_SIZE = 32
CHILD_TIMEOUT_SECONDS = 600
GOAL_SPEEDUP = 3.0
RESULT_MARKER = "EMBEDDER_RESULT "
_HEADING_MARK = re.compile(r"(?m)^\s{0,3}#{1,6}\s+")


def chunks() -> list[TextChunk]:
    """The corpus's chunks as ingestion makes them, but with headings as plain text, so chunks run full."""
    from shared.chunking import chunk_text

    found: list[TextChunk] = []
    for path in sorted(CORPUS.glob("*.md")):
        found += chunk_text(_HEADING_MARK.sub("", path.read_text(encoding="utf-8")))
    return found


def load_baseline(revision: str, folder: Path) -> Any:
    """shared/minilm.py as it was at `revision`, imported as a module of its own."""
    source = subprocess.run(
        ["git", "show", f"{revision}:shared/minilm.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = folder / "minilm_baseline.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("minilm_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def texts_per_second(embedder: Any, texts: list[str]) -> float:
    started = time.perf_counter()
    embedder.embed(texts)
    return len(texts) / (time.perf_counter() - started)


def child(args: argparse.Namespace) -> dict[str, Any]:
    """One configuration: texts per second at each batch size, --repeats times; the vectors to --vectors."""
    import numpy as np

    texts = [chunk.text for chunk in chunks()[: args.texts]]
    with tempfile.TemporaryDirectory() as folder:
        if args.implementation == "before":
            make = load_baseline(args.baseline, Path(folder)).MiniLMEmbedder
        else:
            from shared.minilm import MiniLMEmbedder

            def make(batch_size: int) -> Any:
                return MiniLMEmbedder(batch_size=batch_size, workers=args.workers)

        samples: dict[str, list[float]] = {}
        for batch_size in args.batch_sizes:
            embedder = make(batch_size=batch_size)
            vectors, tokens = embedder.embed(texts)  # loads the model and warms up; not timed
            samples[str(batch_size)] = [texts_per_second(embedder, texts) for _ in range(args.repeats)]
    if args.vectors:
        np.save(args.vectors, vectors)
    return {"samples": samples, "word_pieces_per_text": tokens / len(texts)}


@contextmanager
def busy_core(busy: bool) -> Iterator[None]:
    """Another process that keeps one core busy (bounded by the child timeout), or nothing."""
    if not busy:
        yield
        return
    spin = f"import time\nend = time.monotonic() + {CHILD_TIMEOUT_SECONDS}\nwhile time.monotonic() < end: pass"
    spinner = subprocess.Popen([sys.executable, "-c", spin])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def run_child(name: str, batch_sizes: list[int], args: argparse.Namespace, vectors: Path | None) -> dict[str, Any]:
    implementation, blas_threads, workers = CONFIGURATIONS[name]
    env = {k: v for k, v in os.environ.items() if k not in BLAS_THREAD_VARIABLES}
    if blas_threads is not None:
        env |= dict.fromkeys(BLAS_THREAD_VARIABLES, blas_threads)
    command = [sys.executable, "-m", "bench.embedder", "--child", "--implementation", implementation]
    command += ["--repeats", str(args.repeats), "--texts", str(args.texts), "--baseline", args.baseline]
    command += ["--batch-sizes", *map(str, batch_sizes)]
    command += ["--workers", str(workers)] if workers else []
    command += ["--vectors", str(vectors)] if vectors else []
    result = subprocess.run(
        command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, text=True, timeout=CHILD_TIMEOUT_SECONDS, check=True
    )
    line = next(line for line in result.stdout.splitlines() if line.startswith(RESULT_MARKER))
    return json.loads(line[len(RESULT_MARKER) :])


def measure(args: argparse.Namespace, folder: Path) -> tuple[dict[str, Any], float, float]:
    """Every scenario, batch size and configuration: (medians and samples, min cosine, word pieces a text)."""
    import numpy as np

    samples: dict[str, dict[str, dict[str, list[float]]]] = {}
    pieces = 0.0
    for round_number in range(args.rounds):
        for scenario in SCENARIOS:
            batch_sizes = args.batch_sizes if scenario == "as_is" else [BUSY_BATCH_SIZE]
            for name in CONFIGURATIONS:
                print(f"[embedder] round {round_number + 1}, {scenario}: {name}", file=sys.stderr)
                vectors = folder / f"{name}.npy" if round_number == 0 and scenario == "as_is" else None
                with busy_core(scenario == "one_core_busy"):
                    result = run_child(name, batch_sizes, args, vectors)
                pieces = result["word_pieces_per_text"]
                for batch_size, values in result["samples"].items():
                    by_batch = samples.setdefault(scenario, {}).setdefault(f"batch_{batch_size}", {})
                    by_batch.setdefault(name, []).extend(values)
    before, after = np.load(folder / "before_blas_threads.npy"), np.load(folder / "after_default.npy")
    figures: dict[str, Any] = {}
    for scenario, batches in samples.items():
        for batch, by_name in batches.items():
            medians = {name: round(statistics.median(values), 1) for name, values in by_name.items()}
            figures.setdefault(scenario, {})[batch] = {
                "texts_per_second": medians,
                "speedup_one_core": round(medians["after_1_worker"] / medians["before_1_thread"], 2),
                "speedup_all_cores": round(medians["after_default"] / medians["before_blas_threads"], 2),
                "samples": {name: [round(v, 1) for v in values] for name, values in by_name.items()},
            }
            print(f"[embedder] {scenario}, {batch}: {medians}", file=sys.stderr)
    return figures, float(np.min(np.sum(before * after, axis=1))), pieces


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--texts", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--baseline", default=BASELINE)
    parser.add_argument("--out", type=Path, default=RESULTS_FILE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--implementation", choices=("before", "after"), help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(RESULT_MARKER + json.dumps(child(args)) + "\n")
        return 0
    sample = chunks()[: args.texts]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        figures, min_cosine, pieces = measure(args, Path(folder))
    load_after = os.getloadavg()
    report: dict[str, Any] = {
        "benchmark": "embedder",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            # This sandbox pins OpenBLAS's kernels (OPENBLAS_CORETYPE=Haswell on an AVX-512 CPU); figures depend
            # on it, since the matrix products are most of the time.
            "openblas_environment": {k: v for k, v in sorted(os.environ.items()) if k.startswith("OPENBLAS_")},
            "load_average_1_min": {"start": round(load_before[0], 2), "end": round(load_after[0], 2)},
        },
        "texts": {
            "source": "bench/quality/sets/own/corpus/*.md, chunked by shared/chunking.py (220 estimated tokens)",
            "count": len(sample),
            "estimated_tokens_median": statistics.median(chunk.tokens for chunk in sample),
            "word_pieces_per_text": round(pieces, 1),
        },
        "baseline": args.baseline,
        "configurations": {
            name: {"implementation": implementation, "openblas_num_threads": threads or "default", "workers": workers}
            for name, (implementation, threads, workers) in CONFIGURATIONS.items()
        },
        "rounds": args.rounds,
        "repeats": args.repeats,
        "goal": {"speedup": GOAL_SPEEDUP},
        "min_cosine": round(min_cosine, 6),
        "results": figures,
    }
    write_report(args.out, report)
    print(f"[embedder] wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
