"""Lambda SnapStart's runtime hooks: what runs before the snapshot is taken and after each restore.

With SnapStart (prod's chat function) Lambda runs the init phase once per published version, snapshots the
process, and starts every new execution environment from that snapshot. Whatever the init left in memory is
then shared by every environment, possibly hours later. So, before the snapshot, only what is safe to freeze is
warmed: modules the first answer needs, imported (their import is most of a cold start). No connection, no
secret, no credential and no random state is made then. After each restore, anything that could have been
made anyway is dropped (the function's container: clients, connections, secrets read, caches) and the
`random` module is re-seeded, so no two environments share a sequence. Ids and signatures use `secrets`, which
reads the kernel's randomness each time and needs no re-seeding.

`snapshot_restore_py` exists only in Lambda's Python runtime; elsewhere the hooks are not registered and the
functions behave as they always do.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable, Sequence

from shared.observability import logger
from shared.runtime import collector


def register(before_snapshot: Callable[[], None], after_restore: Callable[[], None]) -> bool:
    """Register the hooks with Lambda's runtime; False where there is no SnapStart runtime (not Lambda)."""
    try:
        from snapshot_restore_py import register_after_restore, register_before_snapshot
    except ImportError:
        return False
    register_before_snapshot(before_snapshot)
    register_after_restore(after_restore)
    return True


def warm_imports(modules: Sequence[str]) -> None:
    """Import `modules` now, so that the snapshot holds them; one that fails is left to fail when used. Like the
    function's own imports, with the collector paused and what they built frozen (shared/runtime/collector.py)."""
    with collector.paused(freeze=True):
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError as error:
                logger.warning(
                    "could not import a module before the snapshot", extra={"module_name": name, "error": str(error)}
                )


def reseed_randomness() -> None:
    random.seed()  # from os.urandom: each restored environment its own sequence
