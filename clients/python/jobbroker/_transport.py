"""The one transport of the clients and the worker: the channel (made on first use, inside the
event loop that uses it), the stubs on it, unary calls with a deadline and retries, server
streams that reconnect and resume after their last event, and the retry backoff.

The job calls (``AsyncClient``), the queue calls (``QueueCalls``) and the worker all reach the
broker through a :class:`Transport`; none of them opens a channel or retries on its own.
"""

# A call's `timeout=` is its gRPC deadline, sent to the broker with the call (see _async.py).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from .connection import RECONNECT_MAX_S, ConnectionSettings, channel_options, open_channel
from .errors import DeadlineExceeded, JobBrokerError, ShuttingDown, Unavailable, from_rpc_error

log = logging.getLogger("jobbroker.client")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
S = TypeVar("S")
T = TypeVar("T")

RECONNECT_MIN_S = 0.01
"""The shortest wait between a stream's reconnections, even with ``retry_backoff=0``: a broker
that refuses at once (shutting down) is not called in a tight loop."""

PERMANENT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
"""Status codes that retrying cannot fix: a worker, which otherwise reconnects and goes on
whatever happened, stops on these."""


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): exponential, capped, with jitter
    (drawn from the upper half, so concurrent clients do not retry in step)."""
    # The exponent stops growing long before the cap matters: a stream or worker reconnects
    # for as long as it takes, and 2**1024 would overflow a float.
    delay = min(cap, base * 2.0 ** min(attempt, 64))
    return random.uniform(delay / 2, delay)


def retryable(error: JobBrokerError) -> bool:
    """Whether sending the call again may succeed: the broker (or its Redis) was unreachable
    or stopping. A CANCELLED the broker sent (a call cut off as it stopped) counts too."""
    return isinstance(error, Unavailable) or error.code == grpc.StatusCode.CANCELLED


class RetryBackoff:
    """The delays of something retried until it works (a worker's stream, its Lease calls):
    :func:`retry_delay` from ``first`` up to ``cap``, from the start again after a success."""

    def __init__(self, first: float = 0.05, cap: float = RECONNECT_MAX_S) -> None:
        self.first = first
        self.cap = cap
        self.failures = 0

    def next_delay(self) -> float:
        delay = retry_delay(self.failures, self.first, self.cap)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """How long a client's calls may take and how they are retried."""

    timeout: float = 10.0
    """Deadline of a unary call in seconds, unless the call's own ``timeout=`` says otherwise."""
    retries: int = 3
    """Retries of a unary call that may be repeated, after UNAVAILABLE."""
    retry_backoff: float = 0.1
    """First retry delay in seconds; it doubles with each retry..."""
    retry_backoff_max: float = 2.0
    """...up to this."""

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("timeout: must be more than 0 seconds")
        if self.retries < 0 or self.retry_backoff < 0 or self.retry_backoff_max < 0:
            raise ValueError("retries, retry_backoff and retry_backoff_max must not be negative")

    def reconnect_delay(self, failures: int) -> float:
        """Seconds before a stream's next reconnection: the retry backoff, but capped at
        RECONNECT_MAX_S, so that a broker that is back is used within a second."""
        base = max(self.retry_backoff, RECONNECT_MIN_S)
        cap = max(base, min(self.retry_backoff_max, RECONNECT_MAX_S))
        return retry_delay(failures, base, cap)


class Outage:
    """A transport's streams that are reconnecting, so that an outage is logged once (when the
    first stream loses the broker, and when the last one is back), not once per stream."""

    def __init__(self, target: str) -> None:
        self._target = target
        self._streams = 0

    def lost(self, error: JobBrokerError) -> None:
        """A stream lost the broker and reconnects."""
        self._streams += 1
        if self._streams == 1:
            log.warning(
                "streams from %s interrupted (%s: %s); they reconnect and resume after their "
                "last event",
                self._target,
                error.code.name,
                error.message,
            )

    def back(self) -> None:
        """A reconnecting stream got a message again."""
        self._streams -= 1
        if self._streams == 0:
            log.info("streams from %s resumed", self._target)

    def gone(self) -> None:
        """A reconnecting stream ended (its timeout, or the caller stopped it)."""
        self._streams -= 1


class Transport:
    """One connection to the broker (one or several addresses, balanced round robin).

    The settings are read once, when it is made: a TLS file that cannot be read raises
    ``ValueError`` then. The channel is opened on the first call, inside the event loop that
    makes it, and is used from that loop only.
    """

    def __init__(self, settings: ConnectionSettings, policy: CallPolicy | None = None) -> None:
        self.settings = settings
        """Where the broker is, and how to authenticate to it."""
        self.policy = policy or CallPolicy()
        """Deadlines and retries of the calls made through :meth:`unary`."""
        self.target = settings.target
        """The gRPC target the channel connects to."""
        self.metadata = settings.metadata or None
        """What every call sends besides the token (None: nothing)."""
        self._credentials = settings.channel_credentials()
        self._options = channel_options(settings.channel_options)
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[Callable[[grpc.aio.Channel], Any], Any] = {}
        self._closed = False
        self._outage = Outage(self.target)

    @property
    def closed(self) -> bool:
        return self._closed

    def channel(self) -> grpc.aio.Channel:
        """The channel, opened on first use; RuntimeError once the transport is closed."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._channel is None:
            self._channel = open_channel(
                self.target,
                credentials=self._credentials,
                options=self._options,
                token=self.settings.token,
            )
        return self._channel

    def stub(self, kind: Callable[[grpc.aio.Channel], S]) -> S:
        """The stub of one service on the channel (``JobServiceStub``...), made once."""
        channel = self.channel()
        stub = self._stubs.get(kind)
        if stub is None:
            stub = self._stubs[kind] = kind(channel)
        return stub

    async def close(self) -> None:
        """Close the channel; calls in flight are cancelled."""
        self._closed = True
        channel, self._channel = self._channel, None
        self._stubs.clear()
        if channel is not None:
            await channel.close()

    def raise_if_closed(self) -> None:
        """Closing the channel cancels its calls: say so, rather than let a CancelledError out
        of a task nobody cancelled."""
        task = asyncio.current_task()
        if self._closed and task is not None and not task.cancelling():
            raise RuntimeError("the client was closed during the call")

    def _retry_delay(self, error: JobBrokerError, attempt: int, deadline: float) -> float:
        """Seconds to wait before retrying a unary call after ``error``, or -1 not to retry."""
        if not retryable(error) or attempt >= self.policy.retries:
            return -1.0
        delay = retry_delay(attempt, self.policy.retry_backoff, self.policy.retry_backoff_max)
        if asyncio.get_running_loop().time() + delay >= deadline:
            return -1.0
        return delay

    async def unary(
        self,
        method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp],
        request: Req,
        *,
        timeout: float | None,
        idempotent: bool = True,
    ) -> Resp:
        """Make a unary call within ``timeout`` seconds (None: the policy's), retrying it on
        UNAVAILABLE when ``idempotent`` (always for a broker that refused it while shutting
        down). Errors are raised as :mod:`jobbroker.errors` exceptions."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.policy.timeout if timeout is None else timeout)
        attempt = 0
        while True:
            remaining = max(0.0, deadline - loop.time())
            try:
                return await method(request, timeout=remaining, metadata=self.metadata)
            except asyncio.CancelledError:
                self.raise_if_closed()
                raise
            except grpc.RpcError as exc:
                error = from_rpc_error(exc)
                # A broker that is shutting down refuses calls before doing anything: always
                # safe to send again (to another broker, or this one once it is back).
                safe = idempotent or isinstance(error, ShuttingDown)
                delay = self._retry_delay(error, attempt, deadline) if safe else -1.0
                if delay < 0:
                    raise error from exc
            await asyncio.sleep(delay)
            attempt += 1

    async def resumable(
        self,
        method: Callable[[], grpc.aio.UnaryStreamMultiCallable[Req, Resp]],
        request: Callable[[str], Req],
        convert: Callable[[Resp, str], tuple[T, str]],
        after_event_id: str,
        timeout: float | None,
        resume_on: Callable[[JobBrokerError], bool] | None = None,
    ) -> AsyncGenerator[T, None]:
        """A server stream that, whenever the broker becomes unreachable, reconnects and resumes
        after the last event it delivered: until ``timeout`` passes (default: for as long as it
        takes), whatever ``retries`` says, since giving up would lose the caller's place.

        ``method()`` is the stream's method (looked up again for each connection),
        ``request(after)`` the request resuming after event ``after`` (empty: from the start),
        and ``convert`` turns a message into the value to yield and the new resume point.
        ``resume_on`` names other errors after which the stream resumes (a broker that ended
        a follower too far behind)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        last = after_event_id
        failures = 0
        cause: JobBrokerError | None = None
        try:
            while True:
                remaining = None if deadline is None else max(0.0, deadline - loop.time())
                # A reconnection waits for the channel to connect (gRPC tries again at most
                # every RECONNECT_MAX_S) rather than failing at once while the broker is away;
                # the first attempt fails fast, so that an outage is noticed and logged.
                call = method()(
                    request(last),
                    timeout=remaining,
                    metadata=self.metadata,
                    wait_for_ready=failures > 0,
                )
                try:
                    async for item in call:
                        if failures:
                            self._outage.back()
                            failures = 0
                        value, last = convert(item, last)
                        yield value
                    return
                except asyncio.CancelledError:
                    self.raise_if_closed()
                    raise
                except grpc.RpcError as exc:
                    error = from_rpc_error(exc)
                    if failures and cause is not None and isinstance(error, DeadlineExceeded):
                        # "Deadline Exceeded" alone would hide why the stream got nowhere.
                        raise DeadlineExceeded(
                            f"the stream's timeout passed while it reconnected; last error "
                            f"{cause.code.name}: {cause.message}"
                        ) from exc
                    if resume_on is not None and resume_on(error):
                        continue  # the broker is there: resume at once
                    if not retryable(error):
                        raise error from exc
                    if not failures:
                        self._outage.lost(error)
                    cause = error
                finally:
                    call.cancel()
                delay = self.policy.reconnect_delay(failures)
                if deadline is not None:  # the attempt made then raises DeadlineExceeded
                    delay = min(delay, max(0.0, deadline - loop.time()))
                await asyncio.sleep(delay)
                failures += 1
        finally:
            if failures:
                self._outage.gone()


class ServiceCalls:
    """The base of a group of calls on one transport (the job calls, the queue calls): a new
    group of calls subclasses it and reaches the broker through ``self._transport``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport
