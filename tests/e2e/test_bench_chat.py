"""bench/streaming.py and bench/cache.py run, small: their figures exist and say what they should."""

from __future__ import annotations

from bench import cache, streaming


def test_the_streaming_benchmark_sees_the_first_token_before_the_end() -> None:
    result = streaming.run(runs=1, chunk_delay=0.02, out=None)
    assert 0 < result["streamed"]["first_token_ms"] < result["streamed"]["total_ms"]
    assert result["buffered"]["first_byte_ms"] > 0


def test_the_cache_benchmark_hits_every_question_the_second_time() -> None:
    result = cache.run(questions=2, model_seconds=0.05, out=None)
    assert result["miss"]["cached"] == 0 and result["hit"]["cached"] == 2
    assert result["model_calls"] == 3  # the warm-up and the two misses; no hit called the model
