"""The garbage collector of a process that serves jobs: ``Worker.run()`` and jobbroker-worker.

A worker allocates a few messages and objects per job and frees nearly all of them by reference
counting, yet with CPython's default threshold (700 allocations) the collector walks the young
generation every few jobs, and every full collection walks everything start-up created too
(modules, the generated protobuf classes, grpc). Measured in bench/profiling.md (issue 16): the
collector took 5 % of the worker's busy samples, and this setting saved ~9 % of the worker's
CPU per job.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

THRESHOLDS = (100_000, 50, 100)
"""``gc.set_threshold`` while serving: the young generation is collected 100,000 allocations
apart instead of 700, the older ones as rarely in proportion."""


@contextlib.contextmanager
def serving_gc() -> Iterator[None]:
    """While the block runs: what exists now is moved out of the collector's walks
    (``gc.freeze``) and :data:`THRESHOLDS` apply; both are undone after. Only for a process the
    worker owns (``run()``, jobbroker-worker), never ``start()``: a library must not retune its
    host's collector."""
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
