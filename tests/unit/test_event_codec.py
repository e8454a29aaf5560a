"""Stream entries -> JobEvent: the type names and the `final` flag every client relies on."""

from __future__ import annotations

import pytest
from jobbroker.v1 import events_pb2 as E
from jobbroker_broker.storage import codec


def decoded(fields: dict[bytes, bytes]) -> E.JobEvent:
    return codec.event("q", b"1700000000000-0", fields)


@pytest.mark.parametrize(
    ("name", "final"),
    [
        (b"completed", True),
        (b"cancelled", True),
        (b"removed", True),
        (b"retries-exhausted", True),
        (b"failed", False),
        (b"stalled", False),
        (b"active", False),
        (b"released", False),
        (b"drained", False),
    ],
)
def test_final_is_set_on_the_events_that_end_a_job(name: bytes, final: bool) -> None:
    assert decoded({b"e": name, b"j": b"1"}).final is final


def test_purged_and_drained_are_two_types() -> None:
    assert decoded({b"e": b"purged", b"j": b"", b"c": b"3"}).type == E.EVENT_TYPE_PURGED
    assert decoded({b"e": b"drained", b"j": b""}).type == E.EVENT_TYPE_DRAINED


def test_a_drain_recorded_before_the_rename_reads_as_purged() -> None:
    """Older brokers wrote DrainQueue's event as `drained` with a count; the stream may still
    hold some after an upgrade, and they must not read as BullMQ's "ran empty"."""
    event = decoded({b"e": b"drained", b"j": b"", b"c": b"3"})
    assert (event.type, event.count) == (E.EVENT_TYPE_PURGED, 3)
