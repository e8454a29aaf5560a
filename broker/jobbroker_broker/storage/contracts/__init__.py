"""The contract of every Lua script, declared once (see :mod:`.base`), and the fields of the
hashes they keep (:mod:`.hashes`)."""

from __future__ import annotations

from typing import Any

from .base import Arg, Contract
from .clock import ADVANCE_CLOCK
from .jobs import ADD, CANCEL, GET, PROMOTE, REMOVE, RETRY
from .leases import COMPLETE, COMPLETE_LEASE, FAIL, LEASE, RELEASE, REPORT
from .maintenance import EXPIRE, PROMOTE_DUE, REAP
from .queues import CLEAN, DRAIN, OBLITERATE, PAUSE, PROMOTE_DELAYED, RETRY_FAILED
from .schedules import FIRE_SCHEDULE
from .workers import LIST_WORKERS, WORKER_SEEN

CONTRACTS: dict[str, Contract[Any, Any]] = {
    contract.name: contract
    for contract in (
        ADD,
        LEASE,
        REPORT,
        COMPLETE,
        COMPLETE_LEASE,
        FAIL,
        RELEASE,
        CANCEL,
        PROMOTE,
        PROMOTE_DUE,
        REAP,
        EXPIRE,
        RETRY,
        REMOVE,
        GET,
        PAUSE,
        DRAIN,
        CLEAN,
        OBLITERATE,
        RETRY_FAILED,
        PROMOTE_DELAYED,
        FIRE_SCHEDULE,
        WORKER_SEEN,
        LIST_WORKERS,
        ADVANCE_CLOCK,
    )
}
"""Every script's contract, by script name."""

__all__ = ["CONTRACTS", "Arg", "Contract"]
