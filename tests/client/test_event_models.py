"""Events as the Python client decodes them: what it reads from the wire, not from a list."""

from __future__ import annotations

from jobbroker import EventType
from jobbroker.models import Event
from jobbroker.v1 import events_pb2 as E


def test_final_comes_from_the_wire() -> None:
    """The broker decides which events end a job; the client keeps no list of its own, so a
    type added later (or a broker that changes its mind) needs no client release."""
    ends = Event.from_proto(E.JobEvent(type=E.EVENT_TYPE_FAILED, final=True))
    goes_on = Event.from_proto(E.JobEvent(type=E.EVENT_TYPE_COMPLETED, final=False))
    assert (ends.final, goes_on.final) == (True, False)


def test_an_operator_drain_and_a_queue_that_ran_empty_are_two_types() -> None:
    purged = Event.from_proto(E.JobEvent(type=E.EVENT_TYPE_PURGED, count=3))
    drained = Event.from_proto(E.JobEvent(type=E.EVENT_TYPE_DRAINED))
    assert (purged.type, purged.count) == (EventType.PURGED, 3)
    assert drained.type is EventType.DRAINED
    assert (EventType.PURGED.value, EventType.DRAINED.value) == ("purged", "drained")
