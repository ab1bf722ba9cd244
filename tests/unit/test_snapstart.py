"""SnapStart's hooks: warm imports before the snapshot, nothing credential-bound kept after a restore."""

from __future__ import annotations

import random
import sys
import types
from collections.abc import Callable

import pytest

from shared.runtime import snapstart


def test_outside_lambda_nothing_is_registered() -> None:
    assert "snapshot_restore_py" not in sys.modules
    assert snapstart.register(lambda: None, lambda: None) is False


def test_in_lambda_both_hooks_are_registered_with_the_runtime(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Lambda's SnapStart runtime module
    registered: dict[str, list[Callable[[], None]]] = {"before": [], "after": []}
    runtime = types.ModuleType("snapshot_restore_py")
    runtime.register_before_snapshot = registered["before"].append  # type: ignore[attr-defined]
    runtime.register_after_restore = registered["after"].append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "snapshot_restore_py", runtime)

    def before() -> None: ...
    def after() -> None: ...

    # When / Then
    assert snapstart.register(before, after) is True
    assert registered == {"before": [before], "after": [after]}


def test_warming_imports_the_modules_and_skips_one_that_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    snapstart.warm_imports(["colorsys", "no_such_module_anywhere"])
    assert "colorsys" in sys.modules


def test_after_a_restore_random_is_reseeded() -> None:
    # Given two environments restored from one snapshot: the same random state
    random.seed(7)
    state = random.getstate()
    first = random.random()
    random.setstate(state)
    # When the second is restored
    snapstart.reseed_randomness()
    # Then its sequence is its own
    assert random.random() != first


def test_the_chat_handler_drops_its_container_and_app_after_a_restore() -> None:
    from functions.chat import handler

    # Given a container and an app built before (as a restored snapshot could hold)
    sentinel = object()
    handler.services.configure(sentinel)  # type: ignore[arg-type]
    handler._asgi = sentinel  # type: ignore[assignment]
    # When
    handler.after_restore()
    # Then the next request builds both anew
    assert handler._asgi is None and handler.services._container is None
    assert set(handler.FIRST_ANSWER_MODULES) >= {"openai"}
