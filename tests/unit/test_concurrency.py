"""What many threads share in one process (the local runtime serves requests on threads) stays correct.

Each test releases its threads at once with a barrier, so they really meet in the code under test.
"""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from shared.container import Container
from shared.lazy import lazy
from shared.minilm import MiniLMEmbedder, _SharedPasses
from shared.observability import _RequestKeysFilter, begin_request, tag_request
from shared.settings import Settings

THREADS = 24


def together(work: Callable[[int], Any], threads: int = THREADS) -> list[Any]:
    """Run work(0..threads-1) on as many threads, all started at the same moment; their results in order."""
    barrier = threading.Barrier(threads)

    def run(number: int) -> Any:
        barrier.wait()
        return work(number)

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return list(pool.map(run, range(threads)))


class Slow:
    builds = 0

    @lazy
    def service(self) -> object:
        Slow.builds += 1
        time.sleep(0.05)  # long enough for every thread to arrive while it is being built
        return object()


def test_a_lazy_service_is_built_once_however_many_threads_ask_at_once() -> None:
    Slow.builds = 0
    owner = Slow()
    seen = together(lambda _: owner.service)
    assert Slow.builds == 1
    assert all(service is seen[0] for service in seen)


def test_a_lazy_service_can_be_replaced_by_assignment() -> None:
    owner = Slow()
    replacement = object()
    owner.service = replacement  # type: ignore[assignment]
    assert owner.service is replacement


def test_the_containers_services_are_one_per_process_under_concurrency() -> None:
    container = Container(Settings())
    chats = together(lambda _: container.chat)
    clients = together(lambda _: container.aws.dynamodb)
    assert len({id(c) for c in chats}) == 1 and len({id(c) for c in clients}) == 1
    assert chats[0]._retriever._store is container.vectors  # and it shares the one vector store


def test_concurrent_callers_share_forward_passes_and_each_gets_its_own_rows() -> None:
    # Given a model whose "vector" of a row is the row's first token, counting its passes
    passes: list[int] = []

    def forward(rows: list[list[int]]) -> np.ndarray:
        passes.append(len(rows))
        time.sleep(0.01)
        return np.array([[row[0]] for row in rows], dtype=np.float32)

    shared = _SharedPasses(forward, max_rows=8)

    # When 24 threads each ask for their own two rows at once
    results = together(lambda n: shared.run([[n * 10], [n * 10 + 1]]))

    # Then each got exactly its own rows back, in fewer passes than callers, none over the row limit
    for n, vectors in enumerate(results):
        assert vectors[:, 0].tolist() == [n * 10, n * 10 + 1]
    assert sum(passes) == 2 * THREADS and len(passes) < THREADS and max(passes) <= 8


def test_passes_allowed_side_by_side_run_together_and_each_caller_gets_its_own_rows() -> None:
    # Given a model that notes how many of its passes run at once, and room for two at a time
    running, most = 0, 0
    counting = threading.Lock()

    def forward(rows: list[list[int]]) -> np.ndarray:
        nonlocal running, most
        with counting:
            running += 1
            most = max(most, running)
        time.sleep(0.02)
        with counting:
            running -= 1
        return np.array([[row[0]] for row in rows], dtype=np.float32)

    shared = _SharedPasses(forward, max_rows=2, passes=2)  # one caller a pass

    # When 8 threads each ask for their own two rows at once
    results = together(lambda n: shared.run([[n * 10], [n * 10 + 1]]), threads=8)

    # Then two passes ran at a time, never more, and each caller got its own rows
    for n, vectors in enumerate(results):
        assert vectors[:, 0].tolist() == [n * 10, n * 10 + 1]
    assert most == 2


def test_a_calls_own_batches_are_not_packed_together_again() -> None:
    # Given room for many rows a pass, and requests each asking for a pass of its own
    passes: list[int] = []

    def forward(rows: list[list[int]]) -> np.ndarray:
        passes.append(len(rows))
        time.sleep(0.01)
        return np.array([[row[0]] for row in rows], dtype=np.float32)

    shared = _SharedPasses(forward, max_rows=32)

    # When 8 threads each bring one such request at once
    results = together(lambda n: shared.run([[n], [n + 100]], alone=True), threads=8)

    # Then each went through a pass of its own
    assert passes == [2] * 8
    assert [vectors[:, 0].tolist() for vectors in results] == [[n, n + 100] for n in range(8)]


def test_a_failed_pass_fails_every_caller_in_it_and_no_other() -> None:
    calls = 0

    def forward(rows: list[list[int]]) -> np.ndarray:
        nonlocal calls
        calls += 1
        if any(row[0] < 0 for row in rows):
            raise RuntimeError("poisoned batch")
        return np.zeros((len(rows), 1), dtype=np.float32)

    shared = _SharedPasses(forward, max_rows=1)  # one caller a pass: only the poisoned caller may fail

    def run(n: int) -> str:
        try:
            shared.run([[-1 if n == 0 else n]])
        except RuntimeError as error:
            return str(error)
        return "ok"

    outcomes = together(run, threads=8)
    assert outcomes[0] == "poisoned batch" and set(outcomes[1:]) == {"ok"}


@pytest.mark.parametrize("threads", [16])
def test_the_local_model_gives_the_same_vectors_from_many_threads_as_from_one(threads: int) -> None:
    embedder = MiniLMEmbedder()
    questions = [f"How many vacation days does employee number {n} get in year {2020 + n}?" for n in range(threads)]
    alone = [embedder.embed([q])[0][0] for q in questions]
    concurrent = together(lambda n: embedder.embed([questions[n]])[0][0], threads=threads)
    for one, many in zip(alone, concurrent, strict=True):
        np.testing.assert_allclose(many, one, atol=2e-5)


def test_each_requests_log_keys_stay_its_own() -> None:
    # Given requests on many threads, each naming its own tenant, all tagging before any logs
    barrier = threading.Barrier(THREADS)
    keys_filter = _RequestKeysFilter()

    def request(number: int) -> str:
        begin_request()
        tag_request(tenant_id=f"t{number}")
        barrier.wait()
        record = logging.LogRecord("docuchat", logging.INFO, __file__, 1, "a line", None, None)
        keys_filter.filter(record)
        return str(record.tenant_id)  # type: ignore[attr-defined]

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        tenants = list(pool.map(lambda n: contextvars.copy_context().run(request, n), range(THREADS)))

    # Then every request's lines carry its own tenant, not the last one tagged
    assert tenants == [f"t{n}" for n in range(THREADS)]
