"""`lazy`: a cached property that is built once, even when many threads ask for it at the same moment.

functools.cached_property lost its lock in Python 3.12: two threads reading it at once each build the value,
and one of the two objects is silently dropped (two boto3 clients, two warm vector indexes, two copies of the
embedding model). On Lambda one request runs at a time, but the local runtime serves many on threads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

T = TypeVar("T")

_LOCKS_GUARD = threading.Lock()


class lazy(Generic[T]):
    def __init__(self, build: Callable[[Any], T]) -> None:
        self._build = build
        self.__doc__ = build.__doc__
        self._name = build.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> lazy[T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> T | lazy[T]:
        if instance is None:
            return self
        # Once built, the value sits in the instance's __dict__, which Python reads before this (non-data)
        # descriptor: later reads cost nothing, and assigning a value of one's own (as tests do) just works.
        values = instance.__dict__
        with _instance_lock(instance):
            if self._name not in values:
                values[self._name] = self._build(instance)
            return values[self._name]


def _instance_lock(instance: object) -> threading.RLock:
    """One re-entrant lock per object: building one service may build the services it needs."""
    lock = instance.__dict__.get("_lazy_lock")
    if lock is None:
        with _LOCKS_GUARD:
            lock = instance.__dict__.setdefault("_lazy_lock", threading.RLock())
    return lock
