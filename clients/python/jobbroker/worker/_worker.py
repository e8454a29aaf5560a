"""The worker SDK: register handlers by job name, then serve.

    from jobbroker import Worker

    worker = Worker("emails", concurrency=10)

    @worker.handler("send")
    async def send(ctx):
        ctx.progress(50)
        return {"sent": True}

    worker.run()  # until SIGTERM / SIGINT, then a graceful shutdown

The worker is a gRPC client of WorkerService and never talks to Redis. See docs/worker.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import re
import secrets
import signal
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import grpc

from .. import tracing
from .._transport import Transport
from ..connection import ConnectionSettings
from ..limits import MAX_LEASE_MS, MAX_WAIT_MS, MIN_LEASE_MS
from ..models import Seconds, ms
from ..schemas import SchemaLike, schema_text
from ..v1.queue_service_pb2_grpc import QueueServiceStub
from ..v1.worker_service_pb2_grpc import WorkerServiceStub
from ._context import DoNotRetry, JobContext
from ._jobs import Jobs
from ._lease import Lease
from ._leasing import Leasing
from ._runner import Handler, is_async
from ._schemas import register as register_schemas
from ._stream import WorkerStream
from ._threads import HandlerThreads
from .collector import serving_gc
from .metrics import WorkerStats, serve_metrics

if TYPE_CHECKING:
    from ..v1.worker_service_pb2_grpc import WorkerServiceAsyncStub

__all__ = ["DoNotRetry", "Handler", "JobContext", "Worker", "WorkerStats", "serve_metrics"]

log = logging.getLogger("jobbroker.worker")

H = TypeVar("H", bound=Handler)

QUEUE_NAME = re.compile(r"[A-Za-z0-9._:-]{1,128}")
FLUSH_TIMEOUT_S = 5.0
"""At shutdown, how long outcomes may take to be acknowledged before the worker gives up."""
UNWIND_S = 1.0
"""At shutdown, how long stopped handlers get to unwind before their jobs are given back."""
WATCHDOG_MARGIN_S = 5.0
"""Under :meth:`Worker.run`, how long past grace + unwinding + flushing a stop may take before
the process exits anyway (an async handler blocking the event loop stops everything)."""
WATCHDOG_EXIT_CODE = 70
"""The exit status when the watchdog ends the process (EX_SOFTWARE)."""


def default_worker_id() -> str:
    """``host:pid:random``, unique per worker process."""
    host = re.sub(r"[^A-Za-z0-9._:-]", "-", socket.gethostname())[:200] or "host"
    return f"{host}:{os.getpid()}:{secrets.token_hex(3)}"


class Worker:
    """Leases jobs from one or more queues and runs the handler registered for each job name.

    Up to ``concurrency`` jobs run at once: ``async def`` handlers on the event loop, plain
    functions in a pool of ``concurrency`` threads. Leases are renewed for you; progress, logs
    and outcomes travel batched on one stream. Stop with :meth:`stop` (or SIGTERM/SIGINT under
    :meth:`run`): leasing stops, running jobs get ``grace`` seconds, the rest go back to waiting
    without spending an attempt. Handler threads that ignore the stop do not keep the process
    alive: they are daemon threads.
    """

    def __init__(
        self,
        queues: str | Sequence[str],
        *,
        address: str | Sequence[str] | None = None,
        concurrency: int = 10,
        lease: Seconds = 30.0,
        grace: Seconds = 30.0,
        worker_id: str | None = None,
        wait: Seconds = 5.0,
        default_attempt_timeout: Seconds | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        token: str | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        """
        :param queues: the queue (or queues) to lease from.
        :param address: the broker, ``host:port`` (any gRPC target, e.g. ``dns:///brokers:50051``),
            or several brokers (a list, or ``host:port`` addresses separated by commas): calls
            are balanced round robin over the live ones. Default: ``JOBBROKER_ADDRESS``, else
            ``127.0.0.1:50051``.
        :param concurrency: handlers running at once at most (also the thread pool's size).
        :param lease: how long a lease lasts without renewal, 1 s - 1 h; renewed every third.
        :param grace: on stop, how long running jobs may take to finish before they are given back.
        :param worker_id: unique per process; default ``host:pid:random``.
        :param wait: how long one ``Lease`` long-poll waits for a job, 0-300 s.
        :param default_attempt_timeout: the longest an attempt of a job without a ``timeout``
            of its own may run on this worker; then the worker fails the attempt
            (``TimeoutError``, retried while attempts are left) and stops the handler. A job's
            own timeout always wins. None (default): no limit, and a handler that hangs keeps
            its job as long as the worker lives (the lease is renewed).
        :param credentials: TLS credentials (:func:`jobbroker.tls_credentials`); default: from
            ``JOBBROKER_TLS``/``JOBBROKER_TLS_CA``/``_CERT``/``_KEY``, else plaintext.
        :param token: API token (``jobbroker token create``) sent with every call; default:
            ``JOBBROKER_TOKEN``.
        :param channel_options: extra gRPC channel options.
        """
        names = [queues] if isinstance(queues, str) else list(queues)
        if not names:
            raise ValueError("a worker needs at least one queue")
        for name in names:
            if not QUEUE_NAME.fullmatch(name):
                raise ValueError(f"queue {name!r}: use 1-128 characters from A-Z a-z 0-9 . _ : -")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.lease_ms = ms(lease)
        if not MIN_LEASE_MS <= self.lease_ms <= MAX_LEASE_MS:
            raise ValueError("lease must be between 1 s and 1 h")
        self.wait_ms = ms(wait)
        if self.wait_ms > MAX_WAIT_MS:
            raise ValueError("wait must be at most 300 s")
        self.default_attempt_timeout: float | None = None
        """Seconds an attempt of a job without its own timeout may run; None: no limit."""
        if default_attempt_timeout is not None:
            self.default_attempt_timeout = ms(default_attempt_timeout) / 1000
            if self.default_attempt_timeout <= 0:
                raise ValueError("default_attempt_timeout must be at least 1 ms (None: no limit)")
        settings = ConnectionSettings.from_env(
            address=address, token=token, credentials=credentials, channel_options=channel_options
        )
        self._transport = Transport(settings)
        self.queues: list[str] = list(dict.fromkeys(names))
        """The queues this worker leases from."""
        self.concurrency = concurrency
        """Handlers running at once at most."""
        self.grace = ms(grace) / 1000
        """Seconds running jobs get to finish when the worker stops."""
        self.worker_id = worker_id or default_worker_id()
        """This worker's id, as the broker records it on the jobs it runs."""
        self._handlers: dict[str, tuple[Handler, bool]] = {}
        self._default: tuple[Handler, bool] | None = None
        self.schemas: dict[str, str] = {}
        """The data schema (JSON text) of each job name registered with one; the worker sets
        them on the broker for each of its queues when it starts."""
        self._jobs: Jobs | None = None
        self._leasing: Leasing | None = None
        self._stream: WorkerStream | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop_requested: asyncio.Event | None = None
        self._deadline = float("inf")
        self._watchdog: threading.Timer | None = None

    def __repr__(self) -> str:
        return f"<Worker {self.worker_id} queues={self.queues} concurrency={self.concurrency}>"

    @property
    def address(self) -> str:
        """The broker's gRPC target."""
        return self._transport.target

    # --- handlers ------------------------------------------------------------------------

    def handler(self, name: str | None = None, *, schema: SchemaLike = None) -> Callable[[H], H]:
        """Register the decorated function for jobs named ``name``; without a name, for every
        job no named handler takes. ``def`` handlers run in threads, ``async def`` ones on the
        loop. The handler gets a :class:`JobContext`; what it returns is the job's result.

        ``schema`` (a pydantic model, a JSON Schema dict or JSON text) describes the job's data:
        the worker sets it on the broker when it starts, and the broker then refuses Adds of
        jobs named ``name`` whose data does not match (docs/schemas.md)."""
        if callable(name):
            raise TypeError("use @worker.handler() (with parentheses) for the default handler")
        if schema is not None:
            if name is None:
                raise ValueError("a schema needs a job name: the default handler takes any data")
            text = schema_text(schema)

        def register(function: H) -> H:
            entry = (function, not is_async(function))
            if name is None:
                if self._default is not None:
                    raise ValueError("a default handler is already registered")
                self._default = entry
            else:
                if name in self._handlers:
                    raise ValueError(f"a handler for {name!r} is already registered")
                self._handlers[name] = entry
                if schema is not None:
                    self.schemas[name] = text
            return function

        return register

    # --- running -------------------------------------------------------------------------

    def run(self) -> None:
        """Serve until SIGTERM or SIGINT, then stop gracefully; a second signal stops at once.
        Blocks; uses uvloop when it is installed, and tunes the garbage collector for serving
        while it runs (:func:`~jobbroker.worker.serving_gc`)."""
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        with contextlib.suppress(ImportError):
            import uvloop

            loop_factory = uvloop.new_event_loop
        try:
            with serving_gc(), asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._serve_until_signal())
        finally:
            # Only now: closing the runner cancels and awaits every task left, and a handler
            # that swallows its cancellation would make that wait forever.
            if self._watchdog is not None:
                self._watchdog.cancel()

    async def _serve_until_signal(self) -> None:
        loop = asyncio.get_running_loop()
        received = 0

        def on_signal(sig: signal.Signals) -> None:
            nonlocal received
            received += 1
            if received == 1:
                log.info(
                    "worker %s: %s received, finishing running jobs (grace %.0f s; send it "
                    "again to stop at once)",
                    self.worker_id,
                    sig.name,
                    self.grace,
                )
                self._request_stop(self.grace)
                limit = self.grace + UNWIND_S + FLUSH_TIMEOUT_S + WATCHDOG_MARGIN_S
                self._watchdog = threading.Timer(limit, self._exit_now, (sig.name, limit))
                self._watchdog.daemon = True
                self._watchdog.start()
            else:
                self._request_stop(0.0)

        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, on_signal, sig)
                installed.append(sig)
        try:
            await self.serve()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _exit_now(self, signal_name: str, limit: float) -> None:
        """The watchdog: the stop did not finish in time (an async handler blocks the event
        loop, or swallows its cancellation); leave without reporting anything more."""
        running = ", ".join(f"{lease.queue}/{lease.job_id}" for lease in self._running_leases())
        log.critical(
            "worker %s: not stopped %.0f s after %s (grace %.0f s): an async handler blocks "
            "the event loop or ignores its cancellation; exiting now. Jobs still held (%s) go "
            "back to waiting when their leases run out",
            self.worker_id,
            limit,
            signal_name,
            self.grace,
            running or "none",
        )
        logging.shutdown()
        sys.stderr.flush()
        os._exit(WATCHDOG_EXIT_CODE)

    def _running_leases(self) -> list[Lease]:
        # Read from another thread (the watchdog): copy first, the loop may be changing it.
        jobs = self._jobs
        if jobs is None:
            return []
        return [lease for lease in list(jobs.leases.values()) if not lease.settled]

    async def serve(self) -> None:
        """Serve until :meth:`stop`; raises a :class:`~jobbroker.JobBrokerError` when the
        broker refuses the worker for good (for example an invalid worker id)."""
        await self.start()
        assert self._main is not None
        try:
            await asyncio.shield(self._main)
        except asyncio.CancelledError:
            if self._main.done():
                raise
            await asyncio.shield(self.stop(0.0))
            raise

    async def start(self) -> None:
        """Start serving in the background and return at once; stop with :meth:`stop`."""
        if self._main is not None:
            raise RuntimeError("this worker was started already")
        if not self._handlers and self._default is None:
            raise RuntimeError("register at least one handler before starting the worker")
        # Export spans when OTEL_* asks for it and the application set up no tracer provider.
        tracing.configure_from_env("jobbroker-worker")
        self._stop_requested = asyncio.Event()
        self._main = asyncio.create_task(self._serve(), name=f"jobbroker-worker-{self.worker_id}")

    async def stop(self, grace: Seconds | None = None) -> None:
        """Stop leasing, give running jobs ``grace`` seconds (default: the worker's) to finish,
        give the others back, flush the stream and close. Returns once all that is done."""
        if self._main is None:
            return
        self._request_stop(self.grace if grace is None else ms(grace) / 1000)
        await asyncio.shield(self._main)

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def active(self) -> int:
        """Leases the worker holds now (jobs running or being reported)."""
        return len(self._jobs.leases) if self._jobs is not None else 0

    def stats(self) -> WorkerStats:
        """What the worker is doing now (the numbers of its Prometheus metrics)."""
        jobs, leasing, stream = self._jobs, self._leasing, self._stream
        return WorkerStats(
            concurrency=self.concurrency,
            busy=jobs.busy if jobs is not None else 0,
            abandoned=len(jobs.abandoned) if jobs is not None else 0,
            leases=len(jobs.leases) if jobs is not None else 0,
            leased=leasing.leased if leasing is not None else 0,
            outcomes=stream.sent_outcomes if stream is not None else 0,
        )

    def _request_stop(self, grace: float) -> None:
        if self._stop_requested is None:
            return
        self._deadline = min(self._deadline, asyncio.get_running_loop().time() + grace)
        self._stop_requested.set()
        if self._jobs is not None:
            self._jobs.changed.set()  # a shorter deadline: re-check it

    def _lookup(self, name: str) -> tuple[Handler, bool] | None:
        return self._handlers.get(name) or self._default

    def connect_with(
        self,
        *,
        address: str | Sequence[str] | None = None,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        """Replace the address, token and TLS credentials given at construction (those given);
        before the worker starts (after: ``RuntimeError``)."""
        if self._main is not None:
            raise RuntimeError("connect_with: the worker was started already")
        given = {"address": address or None, "token": token, "credentials": credentials}
        changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
        if changes:
            settings = dataclasses.replace(self._transport.settings, **changes)
            self._transport = Transport(settings)

    async def _serve(self) -> None:
        stub = self._transport.stub(WorkerServiceStub)
        entries = [*self._handlers.values(), *([self._default] if self._default else [])]
        threaded = any(threaded for _, threaded in entries)
        executor = HandlerThreads(self.concurrency, "jobbroker-worker") if threaded else None
        jobs, stream, leasing = self._assemble(stub, executor)
        ticker = asyncio.create_task(jobs.tick())
        registering = (
            asyncio.create_task(
                register_schemas(
                    self._transport.stub(QueueServiceStub), self.queues, dict(self.schemas)
                )
            )
            if self.schemas
            else None
        )
        log.info("worker %s serving %s at %s", self.worker_id, self.queues, self.address)
        try:
            fatal = await self._until_stopped([stream.start(), *leasing.start()])
            await leasing.close()
            await self._finish_jobs(jobs)
            await stream.close(FLUSH_TIMEOUT_S)
        finally:
            ticker.cancel()
            if registering is not None:
                registering.cancel()
            await leasing.close()
            await stream.close(0.0)
            await self._transport.close()
            if executor is not None:
                executor.shutdown(wait=False, cancel_futures=True)
            self._log_stopped(jobs, leasing, stream)
        if fatal is not None:
            raise fatal

    def _assemble(
        self, stub: WorkerServiceAsyncStub, executor: HandlerThreads | None
    ) -> tuple[Jobs, WorkerStream, Leasing]:
        """The worker's parts, wired together: the leases, the stream, the pollers."""
        jobs = self._jobs = Jobs(
            self.worker_id,
            self.concurrency,
            self.lease_ms,
            self._lookup,
            lambda: list(self._handlers),
            executor,
            self.default_attempt_timeout,
        )
        stream = jobs.stream = WorkerStream(stub, self.worker_id, self.queues, self.lease_ms, jobs)
        self._stream = stream
        leasing = self._leasing = Leasing(
            stub,
            stream,
            self.queues,
            self.worker_id,
            self.concurrency,
            self.lease_ms,
            self.wait_ms,
            jobs.accept,
        )
        jobs.free_slot = leasing.free_slot
        return jobs, stream, leasing

    async def _until_stopped(self, watched: list[asyncio.Task[None]]) -> BaseException | None:
        """Wait for a stop request, or for the stream or a poller to fail for good (then ask
        for a graceful stop); that failure, to raise once the worker has stopped."""
        assert self._stop_requested is not None
        stop = asyncio.create_task(self._stop_requested.wait())
        fatal: BaseException | None = None
        try:
            done, _ = await asyncio.wait([stop, *watched], return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        for task in done:
            if task is not stop and not task.cancelled() and task.exception() is not None:
                fatal = task.exception()
                log.error("worker %s: %s; stopping", self.worker_id, fatal)
                self._request_stop(self.grace)
        return fatal

    def _log_stopped(self, jobs: Jobs, leasing: Leasing, stream: WorkerStream) -> None:
        if jobs.abandoned:
            log.warning(
                "worker %s: %d handler(s) still running, ignoring the stop (jobs %s); "
                "their jobs were given back or failed; not waiting for them (their "
                "threads end with the process)",
                self.worker_id,
                len(jobs.abandoned),
                ", ".join(f"{lease.queue}/{lease.job_id}" for lease in jobs.abandoned),
            )
        log.info(
            "worker %s stopped (%d jobs leased in %d Lease calls and %d answers on the "
            "stream, %d outcomes sent in %d stream messages)",
            self.worker_id,
            leasing.leased,
            leasing.calls,
            leasing.asks,
            stream.sent_outcomes,
            stream.sent_messages,
        )

    async def _finish_jobs(self, jobs: Jobs) -> None:
        """Give running handlers the grace period, then stop them and give their jobs back."""
        if jobs.busy:
            log.info("worker %s: waiting for %d running job(s)", self.worker_id, jobs.busy)
        await jobs.wait_idle(lambda: self._deadline)
        running = jobs.stop_all("worker shutting down")
        if not running:
            return
        log.warning(
            "worker %s: grace period over, stopping %d job(s) and giving them back",
            self.worker_id,
            len(running),
        )
        unwind_until = asyncio.get_running_loop().time() + UNWIND_S
        await jobs.wait_idle(lambda: unwind_until)
        jobs.give_back(running)  # those whose handler (a thread) did not stop
