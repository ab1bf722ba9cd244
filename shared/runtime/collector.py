"""The cyclic garbage collector, paused while a cold start imports what it will keep for the process's life.

Importing the chat function (FastAPI, pydantic, numpy, boto3, Powertools, our routes and models) builds ~200k
objects that live as long as the process: modules, classes, functions, pydantic schemas. The collector's full
passes over them while they are being built free next to nothing, and took ~250 ms of the cold start (openai's
~650 models on first use ~100 ms more). Paused, it does not scan them; frozen (gc.freeze) once the function is
imported, they are left out of every later collection, warm requests' too. What the imports left as cyclic
garbage (a few MB) is not freed.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused(freeze: bool = False) -> Iterator[None]:
    """No collection inside the block; with `freeze`, what exists at its end is never scanned again."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if was_enabled:
            gc.enable()
