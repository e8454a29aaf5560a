"""The live-workers registry: record a sighting, list a queue's workers (registry.py)."""

from __future__ import annotations

from typing import NamedTuple

from .base import Contract, Rows, Scalar


class SeenArgs(NamedTuple):
    worker: str
    queues: str
    """Comma-separated."""
    merge: str
    """'1': add to the stored queues instead of replacing them."""
    window_ms: int


WORKER_SEEN: Contract[SeenArgs, int] = Contract(
    "worker_seen", ("prefix", "workers"), SeenArgs, Scalar("now", int)
)


class ListArgs(NamedTuple):
    window_ms: int
    """Workers seen longer ago than this are stale."""
    max_active: int
    """Active jobs read at most (those whose leases expire first) to count each worker's."""
    max_prune: int
    """Stale entries deleted at most."""


class LiveWorker(NamedTuple):
    worker: bytes
    last_seen: int
    queues: bytes
    """Comma-separated."""
    active_jobs: int


LIST_WORKERS: Contract[ListArgs, list[LiveWorker]] = Contract(
    "list_workers", ("prefix", "workers", "active"), ListArgs, Rows("worker", LiveWorker)
)
