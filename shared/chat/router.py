"""The model chain: retries with backoff, fallback to the next model, and a circuit breaker per model.

For each model of the chain (LLM_MODEL, then LLM_FALLBACK_MODEL's, or the model a caller named first):

- a model whose breaker is open is skipped until its cool-down has passed;
- an attempt that fails in a way another attempt could fix (429, 5xx, timeouts) is retried after a backoff
  with full jitter, or after the model's own Retry-After when it gives one, within LLM_RETRY_MAX_WAIT_SECONDS;
- a model that still fails counts against its breaker, and the next model is tried (a fallback);
- a request the model refuses as invalid (a 400) is the caller's: it is raised at once, without a fallback.

When every model fails, AllModelsFailed is raised and the caller answers with the extractive responder.
The breakers live as long as the process, so they remember failures across warm invocations.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.chat.responders import LLMError, ModelRequest, Upstream
from shared.observability import LLM_BREAKER_OPENED, LLM_CALL_FAILURES, LLM_CALLS, LLM_FALLBACKS, count, logger

BACKOFF_BASE_SECONDS = 0.5


class AllModelsFailed(Exception):
    """No model of the chain answered; the message lists why each one did not."""


class CircuitBreaker:
    """Closed → open after `failures` failed calls in a row → half-open after `cooldown` (one trial call) →
    closed again on success, open again on failure."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._threshold = failures
        self._cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            return "half-open" if self._clock() - self._opened_at >= self._cooldown else "open"

    def allow(self) -> bool:
        """Whether a call may go to the model now; in half-open state, only one caller gets the trial."""
        with self._lock:
            if self._opened_at is None:
                return True
            if self._clock() - self._opened_at < self._cooldown or self._trial:
                return False
            self._trial = True
            return True

    def succeeded(self) -> None:
        with self._lock:
            self._failures, self._opened_at, self._trial = 0, None, False

    def failed(self) -> bool:
        """Record a failed call; True when this failure opened the breaker."""
        with self._lock:
            self._failures += 1
            reopened = self._trial
            self._trial = False
            if reopened or (self._opened_at is None and self._failures >= self._threshold):
                self._opened_at = self._clock()
                return True
            return False


class Breakers:
    """One breaker per model, made on first use."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._make = lambda: CircuitBreaker(failures, cooldown, clock)
        self._lock = threading.Lock()
        self._by_model: dict[str, CircuitBreaker] = {}

    def __getitem__(self, model: str) -> CircuitBreaker:
        with self._lock:
            return self._by_model.setdefault(model, self._make())

    def states(self) -> dict[str, str]:
        with self._lock:
            models = list(self._by_model)
        return {model: self[model].state for model in models}


@dataclass(frozen=True)
class RetryPolicy:
    retries: int  # attempts after the first, per model
    max_wait: float  # the longest single wait, whatever Retry-After says

    def wait(self, attempt: int, error: LLMError, rng: Callable[[], float]) -> float:
        if error.retry_after is not None:
            return min(error.retry_after, self.max_wait)
        return min(self.max_wait, rng() * BACKOFF_BASE_SECONDS * 2**attempt)  # full jitter


class ModelRouter:
    def __init__(
        self,
        upstream: Upstream,
        breakers: Breakers,
        policy: RetryPolicy,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self._upstream = upstream
        self.breakers = breakers
        self._policy = policy
        self._sleep = sleep
        self._rng = rng

    def complete(self, chain: list[str], request: ModelRequest) -> tuple[str, dict[str, Any]]:
        """(the model that answered, its chat.completion)."""
        return self._first_that_answers(chain, lambda model: self._upstream.complete(model, request))

    def stream(self, chain: list[str], request: ModelRequest) -> tuple[str, Iterator[dict[str, Any]]]:
        """(the model that answered, its chunks). A model counts as answering once its first chunk has come:
        a failure before that falls back to the next model; one after it is raised to the reader."""

        def opened(model: str) -> Iterator[dict[str, Any]]:
            chunks = iter(self._upstream.stream(model, request))
            first = next(chunks, None)
            return _prepend(first, chunks)

        return self._first_that_answers(chain, opened)

    def _first_that_answers(self, chain: list[str], call: Callable[[str], Any]) -> tuple[str, Any]:
        reasons = []
        for position, model in enumerate(chain):
            breaker = self.breakers[model]
            if not breaker.allow():
                reasons.append(f"{model}: skipped, its circuit breaker is open")
                continue
            try:
                result = self._attempts(model, call)
            except LLMError as error:
                if error.caller_error:
                    raise
                reasons.append(f"{model}: {error}")
                count(LLM_CALL_FAILURES, 1, model=model)
                if breaker.failed():
                    count(LLM_BREAKER_OPENED, 1, model=model)
                    logger.warning("circuit breaker opened", extra={"model": model})
                if position + 1 < len(chain):
                    count(LLM_FALLBACKS, 1, model=model)
                    logger.warning("model failed; falling back", extra={"model": model, "error": str(error)})
                continue
            breaker.succeeded()
            return model, result
        raise AllModelsFailed("; ".join(reasons) or "no model is configured")

    def _attempts(self, model: str, call: Callable[[str], Any]) -> Any:
        for attempt in range(self._policy.retries + 1):
            count(LLM_CALLS, 1, model=model)
            try:
                return call(model)
            except LLMError as error:
                if not error.retryable or attempt == self._policy.retries:
                    raise
                wait = self._policy.wait(attempt, error, self._rng)
                logger.info("model call failed; retrying", extra={"model": model, "wait": wait, "error": str(error)})
                self._sleep(wait)
        raise AssertionError("unreachable")


def _prepend(first: dict[str, Any] | None, rest: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    if first is not None:
        yield first
    yield from rest
