"""A worker's job data schemas, registered with the broker when it starts (docs/schemas.md).

Registration runs beside leasing: a broker that is not up yet is tried again with backoff
until it answers, so the worker starts as it would without schemas. A schema the broker
refuses is logged, and the worker serves on (its handlers still see only what they accept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import grpc

from ..v1 import queue_service_pb2 as pb

if TYPE_CHECKING:
    from ..v1.queue_service_pb2_grpc import QueueServiceAsyncStub

log = logging.getLogger("jobbroker.worker")

_RETRIED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 10.0
CALL_TIMEOUT_S = 10.0


async def register(
    stub: QueueServiceAsyncStub, queues: Sequence[str], schemas: Mapping[str, str]
) -> None:
    """Set every (queue, job name) schema; returns once each is set or refused for good."""
    for queue in queues:
        for name, text in schemas.items():
            delay = FIRST_DELAY_S
            while True:
                request = pb.SetJobSchemaRequest(queue=queue, name=name, schema=text)
                try:
                    reply = await stub.SetJobSchema(request, timeout=CALL_TIMEOUT_S)
                except grpc.aio.AioRpcError as exc:
                    if exc.code() in _RETRIED:
                        await asyncio.sleep(delay)
                        delay = min(MAX_DELAY_S, delay * 2)
                        continue
                    log.error(
                        "queue %s, job %r: the broker refused the data schema (%s: %s); "
                        "jobs of that name are not checked at Add",
                        queue,
                        name,
                        exc.code().name,
                        exc.details(),
                    )
                    break
                log.info(
                    "queue %s, job %r: data schema %s",
                    queue,
                    name,
                    "registered" if reply.changed else "unchanged",
                )
                break
