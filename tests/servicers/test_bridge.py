"""The bridge itself (aio_bridge.py): a call runs as the broker runs it, start to end."""

from __future__ import annotations

import time

from jobbroker.v1 import job_pb2
from jobbroker.v1 import job_service_pb2 as js
from jobbroker_broker.server.services.common import Parts

from .calls import Caller


def test_a_client_cancel_ends_the_stream_on_the_broker(
    served: Caller, parts: Parts, queue: str
) -> None:
    request = js.AddRequest(queue=queue, name="job", data=job_pb2.Payload(body=b"{}"))
    job_id = served.call("JobService.Add", request).response.job_id
    follow = js.StreamProgressRequest(queue=queue, job_id=job_id)
    stream = served.open_stream("JobService.StreamProgress", follow)
    assert stream.take_response().snapshot.id == job_id
    assert len(parts.streams) == 1  # counted against its caller, until it ends
    stream.cancel()
    deadline = time.monotonic() + 10.0  # a bound on a wait, not on how fast it ends
    while len(parts.streams) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(parts.streams) == 0, "the stream's task was not cancelled"
