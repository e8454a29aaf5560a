"""Serve the broker's grpc.aio servicers through grpcio-testing's server, without a network.

Why: tests/integration and tests/security check the same refusals through a real server, port
and channel. Here nothing but the servicer and the gate is between the test and the status:
grpc_testing hands back the code, details and trailing metadata exactly as the handler ended
the call, with no port, channel or client library that could add, drop or remap anything, so
a failure points at the servicer's (or the gate's) error mapping.

grpc_testing serves *sync* servicers: per call it starts a thread, makes its own
``grpc.ServicerContext`` and calls ``servicer.<Method>(request, context)``, expecting a response
(or, for a server stream, an iterator of them). The broker's handlers are coroutines and async
generators written against ``grpc.aio.ServicerContext``. This module puts thin sync methods in
front of them and changes nothing else:

- The handlers are the broker's own. The generated ``add_*Servicer_to_server`` functions register
  the real servicers on a recorder, and the real :class:`~jobbroker_broker.server.gate.Gate` wraps
  each one with ``wrap_handler``, as its interceptor does per method in the broker. Requests
  are serialized and go through the wrapped handler's deserializer (the gate's), as bytes off
  the wire would.
- Every call runs as one task on one event loop (:class:`LoopThread`), where the broker's Redis
  clients live, as grpc.aio runs a call: the identity the gate sets (a contextvar) holds for
  the whole call, and a client's cancel cancels the task.
- :class:`AioContext` stands in for the aio context. An aio ``abort(code, details,
  trailing_metadata)`` ends the call with ``set_trailing_metadata``, ``set_code`` and
  ``set_details`` on grpc_testing's context and a normal return, not with grpc_testing's own
  ``abort``: that one ends the call with empty trailing metadata, which would drop
  ``grpc-status-details-bin`` (the ErrorInfo the broker's errors carry).

Left out: the broker's other interceptor, RpcMetrics, which times calls and changes none.
Server-stream items are handed over without flow control (the task does not wait for the test
to read them); ``peer()`` is :data:`PEER`, as grpc_testing's context has no peer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import grpc_testing
from google.protobuf import descriptor_pool
from jobbroker.v1 import job_service_pb2_grpc, queue_service_pb2_grpc, worker_service_pb2_grpc
from jobbroker_broker.server.gate import Gate
from jobbroker_broker.server.services.common import Parts
from jobbroker_broker.server.services.jobs import JobService
from jobbroker_broker.server.services.queues import QueueService
from jobbroker_broker.server.services.workers import WorkerService

T = TypeVar("T")
Handler = Any  # grpc.RpcMethodHandler, as the generated code builds it
PEER = "ipv4:127.0.0.1:0"
"""What ``AioContext.peer()`` answers (the key of a caller's streams without authentication)."""
CALL_TIMEOUT = 60.0
"""Seconds a loop thread call may take before the test fails instead of hanging."""
_END = object()


class LoopThread:
    """An asyncio event loop running in a thread of its own."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="aio-servicers")
        self._thread.start()
        self._running: set[concurrent.futures.Future[Any]] = set()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        self._running.add(future)
        future.add_done_callback(self._running.discard)
        return future

    def cancel_calls(self) -> None:
        """Cancel what still runs (a stream a test left open), as a server stopping does, so
        no thread of grpc_testing's is left waiting on it."""
        for future in list(self._running):
            future.cancel()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.submit(coroutine).result(CALL_TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class AioContext:
    """What the broker's handlers use of ``grpc.aio.ServicerContext``, over grpc_testing's."""

    def __init__(self, context: grpc.ServicerContext) -> None:
        self._context = context
        self._status: tuple[grpc.StatusCode, str, tuple[Any, ...]] | None = None

    async def abort(
        self, code: grpc.StatusCode, details: str = "", trailing_metadata: Any = ()
    ) -> None:
        # grpc.aio's abort records the status, sends it, and raises AbortError.
        if self._status is not None:
            raise grpc.aio.UsageError("Abort already called!")
        self._status = (code, details, tuple(trailing_metadata))
        raise grpc.aio.AbortError("Locally aborted.")

    def end_aborted(self) -> None:
        """End the call with the status ``abort`` recorded (in grpc_testing's thread)."""
        assert self._status is not None
        code, details, trailing_metadata = self._status
        self._context.set_trailing_metadata(trailing_metadata)
        self._context.set_code(code)
        self._context.set_details(details)

    def invocation_metadata(self) -> Any:
        return self._context.invocation_metadata()

    def peer(self) -> str:
        return PEER

    def time_remaining(self) -> float | None:
        return self._context.time_remaining()

    def set_code(self, code: grpc.StatusCode) -> None:
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._context.set_details(details)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._context.set_trailing_metadata(trailing_metadata)


class _Recorder:
    """Takes what a generated ``add_*Servicer_to_server`` gives a server."""

    def __init__(self) -> None:
        self.handlers: dict[str, dict[str, Handler]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass  # the same handlers come by name below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.handlers[service] = handlers


def broker_handlers(parts: Parts) -> dict[str, dict[str, Handler]]:
    """The handlers the broker serves for its own services, by service and method name."""
    recorder = _Recorder()
    job_service_pb2_grpc.add_JobServiceServicer_to_server(JobService(parts), recorder)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerService(parts), recorder)
    queue_service_pb2_grpc.add_QueueServiceServicer_to_server(QueueService(parts), recorder)
    return recorder.handlers


def testing_server(parts: Parts, gate: Gate, loop: LoopThread) -> grpc_testing.Server:
    """A grpc_testing server of the broker's services, each method behind ``gate``."""
    pool = descriptor_pool.Default()
    servicers = {}
    for service, handlers in broker_handlers(parts).items():
        methods = {
            name: _sync_method(gate.wrap_handler(f"/{service}/{name}", handler), loop)
            for name, handler in handlers.items()
        }
        servicers[pool.FindServiceByName(service)] = SimpleNamespace(**methods)
    return grpc_testing.server_from_dictionary(servicers, grpc_testing.strict_real_time())


def _sync_method(handler: Handler, loop: LoopThread) -> Callable[[Any, Any], Any]:
    """The sync method grpc_testing calls, running ``handler``'s behaviour on ``loop``."""
    parse = handler.request_deserializer

    def request(message: Any) -> Any:
        return parse(message if isinstance(message, bytes) else message.SerializeToString())

    if handler.unary_unary is not None:
        behavior = handler.unary_unary

        def unary(message: Any, context: grpc.ServicerContext) -> Any:
            aio = AioContext(context)
            future = loop.submit(behavior(request(message), aio))
            _cancel_on_end(context, future)
            try:
                return future.result(CALL_TIMEOUT)
            except grpc.aio.AbortError:
                aio.end_aborted()
            except concurrent.futures.CancelledError:
                pass  # the client cancelled: grpc_testing has ended the call
            return None

        return unary
    if handler.unary_stream is not None:
        server_stream = handler.unary_stream
        return lambda message, context: _stream(
            lambda aio: server_stream(request(message), aio), context, loop
        )
    if handler.stream_stream is not None:
        bidi_stream = handler.stream_stream

        async def requests(messages: Iterator[Any]) -> AsyncIterator[Any]:
            # grpc_testing's request iterator blocks until the test sends or closes.
            while (message := await asyncio.to_thread(next, messages, _END)) is not _END:
                yield request(message)

        return lambda messages, context: _stream(
            lambda aio: bidi_stream(requests(messages), aio), context, loop
        )
    raise NotImplementedError("the broker serves no client-streaming method")


def _stream(
    start: Callable[[AioContext], AsyncIterator[Any]],
    context: grpc.ServicerContext,
    loop: LoopThread,
) -> Iterator[Any]:
    """Run the async generator ``start(aio_context)`` as one task; yield what it yields."""
    aio = AioContext(context)
    items: queue.Queue[Any] = queue.Queue()

    async def pump() -> None:
        try:
            async for item in start(aio):
                items.put(item)
        finally:
            items.put(_END)

    future = loop.submit(pump())
    _cancel_on_end(context, future)
    while (item := items.get(timeout=CALL_TIMEOUT)) is not _END:
        yield item
    try:
        future.result(CALL_TIMEOUT)
    except grpc.aio.AbortError:
        aio.end_aborted()
    except concurrent.futures.CancelledError:
        pass


def _cancel_on_end(context: grpc.ServicerContext, future: concurrent.futures.Future[Any]) -> None:
    """Cancel the call's task once grpc_testing ends the call: a client's cancel (at a normal
    end the task is done already)."""

    def cancel() -> None:
        future.cancel()

    context.add_callback(cancel)
