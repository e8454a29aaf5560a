"""Client: the synchronous twin of AsyncClient, which it runs on a private event-loop thread.

Its methods are made from AsyncClient's, not written again: ``blocking(AsyncClient.get_status)``
is a method that runs the coroutine on the client's thread and returns its result,
``iterating(AsyncClient.stream_progress)`` one that turns an async generator into an iterator.
Each keeps the parameters (and docstring) of the method it is made from, for mypy and IDEs
(through ``ParamSpec``) and for ``inspect.signature``/``help()`` (``__wrapped__``). A method
added to AsyncClient needs one line here; tests/client/test_client_parity.py fails until it has.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import inspect
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, Concatenate, ParamSpec, Self, TypeVar

from ._async import AsyncClient

P = ParamSpec("P")
T = TypeVar("T")


def blocking(
    method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]],
) -> Callable[Concatenate[Client, P], T]:
    """The :class:`Client` method that runs AsyncClient's coroutine method ``method``."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(method(self._async, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    return call


def iterating(
    method: Callable[Concatenate[AsyncClient, P], AsyncGenerator[T, None]],
) -> Callable[Concatenate[Client, P], Iterator[T]]:
    """The :class:`Client` method that iterates AsyncClient's async generator ``method``."""

    @functools.wraps(method)
    def call(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> Iterator[T]:
        return self._iterate(method(self._async, *args, **kwargs))

    call.__qualname__ = f"Client.{method.__name__}"
    # What help() and inspect show: AsyncClient's parameters, but an Iterator of its items.
    signature = inspect.signature(method)
    returns = signature.return_annotation
    if isinstance(returns, str) and returns.startswith("AsyncGenerator["):
        returns = "Iterator[" + returns.removeprefix("AsyncGenerator[").rsplit(",", 1)[0] + "]"
    call.__signature__ = signature.replace(return_annotation=returns)  # type: ignore[attr-defined]
    return call


def _arguments_of(
    init: Callable[Concatenate[AsyncClient, P], None],
) -> Callable[[Callable[..., None]], Callable[Concatenate[Client, P], None]]:
    """Give the decorated ``__init__`` the parameters of ``init`` (AsyncClient's)."""

    def decorate(function: Callable[..., None]) -> Callable[Concatenate[Client, P], None]:
        wrapped = functools.wraps(init)(function)
        wrapped.__qualname__ = "Client.__init__"
        wrapped.__doc__ = function.__doc__
        return wrapped

    return decorate


class Client:
    """The synchronous twin of :class:`AsyncClient`: the same methods, arguments, deadlines,
    retries and errors, blocking until done; streams are plain iterators.

    It runs an AsyncClient on a private event-loop thread. Use ``with Client(...) as client:``
    or call :meth:`close`. One Client may be shared by many threads.
    """

    @_arguments_of(AsyncClient.__init__)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """The same arguments as :class:`AsyncClient`."""
        self._async = AsyncClient(*args, **kwargs)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="jobbroker-client", daemon=True
        )
        self._thread.start()
        self._finalizer = weakref.finalize(self, _shut_down, self._loop, self._thread, self._async)

    @property
    def target(self) -> str:
        """The gRPC target the client connects to."""
        return self._async.target

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        if not self._finalizer.alive or threading.current_thread() is self._thread:
            call.close()
            raise RuntimeError(
                "the client is closed"
                if not self._finalizer.alive
                else "a Client cannot be called from its own thread"
            )
        future = asyncio.run_coroutine_threadsafe(call, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            raise RuntimeError("the client was closed during the call") from None
        except BaseException:
            future.cancel()  # KeyboardInterrupt and the like: stop the call too
            raise

    def _iterate(self, iterator: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while (step := self._run(_next(iterator))) is not None:
                yield step[0]
        finally:
            usable = self._finalizer.alive and threading.current_thread() is not self._thread
            if usable:
                self._run(iterator.aclose())

    # The producers' calls (JobService): see AsyncClient.
    add = blocking(AsyncClient.add)
    add_bulk = blocking(AsyncClient.add_bulk)
    get_status = blocking(AsyncClient.get_status)
    cancel = blocking(AsyncClient.cancel)
    stream_progress = iterating(AsyncClient.stream_progress)
    wait = blocking(AsyncClient.wait)
    list = blocking(AsyncClient.list)
    iter_jobs = iterating(AsyncClient.iter_jobs)
    retry = blocking(AsyncClient.retry)
    promote = blocking(AsyncClient.promote)
    remove = blocking(AsyncClient.remove)
    logs = blocking(AsyncClient.logs)

    # The operators' calls (QueueService): see AsyncClient's QueueCalls.
    queues = blocking(AsyncClient.queues)
    queue = blocking(AsyncClient.queue)
    pause = blocking(AsyncClient.pause)
    resume = blocking(AsyncClient.resume)
    drain = blocking(AsyncClient.drain)
    clean = blocking(AsyncClient.clean)
    obliterate = blocking(AsyncClient.obliterate)
    retry_failed = blocking(AsyncClient.retry_failed)
    promote_delayed = blocking(AsyncClient.promote_delayed)
    update_settings = blocking(AsyncClient.update_settings)
    workers = blocking(AsyncClient.workers)
    watch_events = iterating(AsyncClient.watch_events)
    upsert_schedule = blocking(AsyncClient.upsert_schedule)
    schedules = blocking(AsyncClient.schedules)
    schedule = blocking(AsyncClient.schedule)
    remove_schedule = blocking(AsyncClient.remove_schedule)

    set_job_schema = blocking(AsyncClient.set_job_schema)
    job_schemas = blocking(AsyncClient.job_schemas)


async def _next(iterator: AsyncIterator[T]) -> tuple[T] | None:
    """The iterator's next item in a 1-tuple, or None at its end (a StopAsyncIteration cannot
    cross the thread boundary as an exception)."""
    try:
        return (await anext(iterator),)
    except StopAsyncIteration:
        return None


async def _close(client: AsyncClient) -> None:
    """Close the client, then end every call still running (one waiting out a retry backoff,
    say), so no thread stays blocked on a loop that is about to stop."""
    await client.close()
    others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)


def _shut_down(
    loop: asyncio.AbstractEventLoop, thread: threading.Thread, client: AsyncClient
) -> None:
    """Close a Client's AsyncClient and stop its thread (on close(), collection, or exit)."""
    if thread is threading.current_thread():  # collected on its own thread: cannot wait
        loop.call_soon(loop.stop)
        return
    with contextlib.suppress(Exception):
        asyncio.run_coroutine_threadsafe(_close(client), loop).result(timeout=5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()
