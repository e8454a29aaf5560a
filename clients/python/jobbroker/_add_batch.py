"""Concurrent ``add`` calls of one client gathered into ``AddBulk(each=True)`` calls.

Up to ``MAX_IN_FLIGHT`` add calls per queue are in flight at once, so one slow call (a durable
add waiting for a replica, a broker that is failing over) does not hold every other add of the
producer. An ``add`` that finds a free slot and nothing waiting goes out at once as a plain
``Add``. Adds made while every slot is taken wait for one and then leave together, up to
``MAX_BATCH``, in one ``AddBulk`` with ``each`` set: every job on its own, as if it were its
own ``Add`` (its own result, or its own error: a conflict or an invalid job fails only that
``add``); a lone waiting add goes out as a plain ``Add``. One RPC then carries many jobs, which
is what lets a client with many adds in flight go faster than one unary call per job (grpc's
cost per call). Failure of the whole call:

- UNAVAILABLE or DEADLINE_EXCEEDED: the jobs may have been stored; an ``add`` without a custom
  job id fails with that error (like a single ``add``), one with a job id is sent again on its
  own, with the client's retries (a stored job then answers ``duplicate``);
- anything else (for example a broker that predates ``each`` and refused the whole call): each
  job is sent again on its own as a plain ``Add``, so it gets its own answer.
"""

# The timeout here is the add call's deadline, handed to gRPC (see _async.py).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import grpc

from ._transport import Transport
from .errors import error_from_reason, from_rpc_error
from .v1 import job_service_pb2 as pb
from .v1.job_service_pb2_grpc import JobServiceStub

if TYPE_CHECKING:
    from .v1.job_service_pb2_grpc import JobServiceAsyncStub

MAX_BATCH = 1_000
"""Jobs per AddBulk at most (the broker's default bulk limit)."""
MAX_IN_FLIGHT = 2
"""Calls per queue in flight at once: a second one keeps adds flowing past a slow one. Each
extra slot splits the waiting adds into smaller batches, which costs CPU per job: with 4 slots
the broker spent about 25 % more CPU per add at 100 adds in flight, with 2 the same as with 1
(bench/quick_throughput.py --add)."""
_MAYBE_STORED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
_CODES = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(slots=True)
class _Waiting:
    request: pb.AddRequest
    deadline: float
    idempotent: bool
    future: asyncio.Future[pb.AddResponse]


@dataclass(slots=True)
class _Queue:
    """A queue with add calls in flight."""

    in_flight: int = 0
    waiting: list[_Waiting] = field(default_factory=list)
    """The adds waiting for a free slot."""


class AddBatcher:
    """Gathers one client's concurrent adds per queue; up to MAX_IN_FLIGHT RPCs per queue."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
        self._queues: dict[str, _Queue] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _jobs(self) -> JobServiceAsyncStub:
        return self._transport.stub(JobServiceStub)

    async def add(
        self, request: pb.AddRequest, timeout: float | None, idempotent: bool
    ) -> pb.AddResponse:
        queue = request.queue
        state = self._queues.setdefault(queue, _Queue())
        if state.in_flight < MAX_IN_FLIGHT and not state.waiting:
            state.in_flight += 1
            try:
                reply: pb.AddResponse = await self._transport.unary(
                    self._jobs().Add, request, timeout=timeout, idempotent=idempotent
                )
                return reply
            finally:
                self._done(queue)
        loop = asyncio.get_running_loop()
        budget = self._transport.policy.timeout if timeout is None else timeout
        future: asyncio.Future[pb.AddResponse] = loop.create_future()
        state.waiting.append(_Waiting(request, loop.time() + budget, idempotent, future))
        return await future

    def _done(self, queue: str) -> None:
        """An add call of `queue` ended: its slot goes to what waits (or is freed)."""
        state = self._queues[queue]
        state.in_flight -= 1
        state.waiting = [w for w in state.waiting if not w.future.cancelled()]
        while state.waiting and state.in_flight < MAX_IN_FLIGHT:
            batch, state.waiting = state.waiting[:MAX_BATCH], state.waiting[MAX_BATCH:]
            state.in_flight += 1
            task = asyncio.create_task(self._send(queue, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not state.in_flight:
            del self._queues[queue]

    async def _send(self, queue: str, batch: list[_Waiting]) -> None:
        try:
            if len(batch) == 1:
                await self._alone(batch[0])
            else:
                await self._together(queue, batch)
        except BaseException as exc:  # cancelled (the client closed), or a bug of ours
            for waiting in batch:
                if waiting.future.done():
                    continue
                if isinstance(exc, Exception):
                    waiting.future.set_exception(exc)
                else:
                    waiting.future.cancel()
            if not isinstance(exc, Exception):
                raise
        finally:
            self._done(queue)

    async def _together(self, queue: str, batch: list[_Waiting]) -> None:
        request = pb.AddBulkRequest(queue=queue, each=True)
        add = request.jobs.add
        for waiting in batch:
            job = waiting.request
            add(name=job.name, data=job.data, options=job.options)
        loop = asyncio.get_running_loop()
        remaining = max(0.0, min(w.deadline for w in batch) - loop.time())
        try:
            reply = await self._jobs().AddBulk(
                request, timeout=remaining, metadata=self._transport.metadata
            )
        except grpc.RpcError as exc:
            error = from_rpc_error(exc)
            again = []
            for waiting in batch:
                if waiting.future.done():
                    continue  # the caller went away
                if exc.code() in _MAYBE_STORED and not waiting.idempotent:
                    waiting.future.set_exception(error)
                else:
                    again.append(self._alone(waiting))
            await asyncio.gather(*again)
            return
        errors = {e.index: e for e in reply.errors}
        for i, waiting in enumerate(batch):
            if waiting.future.done():
                continue
            failed = errors.get(i)
            if failed is None:
                waiting.future.set_result(reply.results[i])
            else:
                code = _CODES.get(failed.code, grpc.StatusCode.UNKNOWN)
                waiting.future.set_exception(
                    error_from_reason(code, failed.reason, failed.message, dict(failed.metadata))
                )

    async def _alone(self, waiting: _Waiting) -> None:
        """Send one waiting add as a plain Add, with the client's retries."""
        remaining = max(0.0, waiting.deadline - asyncio.get_running_loop().time())
        try:
            reply = await self._transport.unary(
                self._jobs().Add,
                waiting.request,
                timeout=remaining,
                idempotent=waiting.idempotent,
            )
        except Exception as exc:
            if not waiting.future.done():
                waiting.future.set_exception(exc)
            return
        if not waiting.future.done():
            waiting.future.set_result(reply)
