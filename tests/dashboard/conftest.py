"""Fixtures of the dashboard tests: a real broker and a real worker on a loop thread of their
own, and the dashboard served by uvicorn on a free port on another, so that the tests drive it
as a browser or an HTTP caller would (httpx, Playwright) from the test's own thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import uvicorn
from client.conftest import SETTINGS, BrokerHost, RunningBroker
from jobbroker import Client, DoNotRetry, JobContext, Worker
from jobbroker_broker.server import tokens
from jobbroker_broker.server.app import Broker
from jobbroker_dashboard import DashboardSettings
from jobbroker_dashboard.app import Dashboard

T = TypeVar("T")


class Gates:
    """Named gates that worker handlers wait on and tests open, so a job moves one step at a
    time when the test says so (never on a timer)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._gates: dict[str, asyncio.Event] = {}

    def _gate(self, name: str) -> asyncio.Event:
        return self._gates.setdefault(name, asyncio.Event())

    async def wait(self, name: str) -> None:
        await self._gate(name).wait()

    def open(self, name: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self._gate(name).set())


def make_worker(address: str, queue: str, gates: Gates, token: str | None = None) -> Worker:
    """A worker of ``queue`` whose handlers the tests use:

    - ``echo``: returns its data;
    - ``fail``: fails with ``data.message`` (DoNotRetry with ``data.final``);
    - ``fail-once``: fails its first run, completes any later one (so a retry completes);
    - ``steps``: for each ``data.steps`` entry, waits for gate ``<data.gate>-<i>``, then logs
      the entry and reports progress (percent, and the text so far as its value).
    """
    worker = Worker(queue, address=address, token=token or "", concurrency=20, wait=1, lease=30)
    failed_once: set[str] = set()

    @worker.handler("echo")
    async def echo(ctx: JobContext) -> Any:
        return ctx.data

    @worker.handler("fail")
    async def fail(ctx: JobContext) -> Any:
        message = str(ctx.data.get("message", "boom"))
        if ctx.data.get("final"):
            raise DoNotRetry(message)
        raise RuntimeError(message)

    @worker.handler("fail-once")
    async def fail_once(ctx: JobContext) -> Any:
        if ctx.id not in failed_once:
            failed_once.add(ctx.id)
            raise RuntimeError("first run fails")
        return {"ok": True}

    @worker.handler("steps")
    async def steps(ctx: JobContext) -> Any:
        parts: list[str] = list(ctx.data["steps"])
        text = ""
        for i, part in enumerate(parts):
            await gates.wait(f"{ctx.data['gate']}-{i}")
            text += part
            ctx.log(f"step {i}: {part}")
            ctx.progress(round(100 * (i + 1) / len(parts)), value=text)
        return {"text": text}

    return worker


class Host(BrokerHost):
    """The loop thread of the tests' brokers and workers."""

    def run(self, call: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout)


@dataclass
class Served:
    """A dashboard served on 127.0.0.1:``port``."""

    server: uvicorn.Server
    thread: threading.Thread
    port: int
    dash: Dashboard | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def serve_dashboard(settings: DashboardSettings) -> Served:
    """What ``jobbroker dashboard`` serves, with ``settings``, keeping hold of its Dashboard."""
    dash = Dashboard(settings)
    served = serve(dash.app())
    served.dash = dash
    return served


def serve(app: Any) -> Served:
    """Serve ``app`` with uvicorn on a free port, on a thread of its own."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="on",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    ready = threading.Event()

    def run() -> None:
        loop = asyncio.new_event_loop()

        async def main() -> None:
            task = loop.create_task(server.serve())
            # uvicorn sets a flag, not an event, once it listens.
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            ready.set()
            await task

        loop.run_until_complete(main())
        loop.close()

    thread = threading.Thread(target=run, name="dashboard", daemon=True)
    thread.start()
    assert ready.wait(15), "the dashboard did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    return Served(server, thread, port)


@pytest.fixture(scope="session")
def host() -> Iterator[Host]:
    running = Host()
    yield running
    running.close()


@pytest.fixture(scope="session")
def broker(host: Host, redis_url: str) -> Iterator[RunningBroker]:
    """A broker without auth, shared by the tests (each uses its own queue)."""
    running = host.run(host.start(redis_url))
    yield running
    host.run(host.stop(running))


@pytest.fixture(scope="session")
def dashboard(broker: RunningBroker) -> Iterator[Served]:
    """``jobbroker dashboard``'s app (pages at /admin/queues, API at /api) on ``broker``."""
    served = serve_dashboard(DashboardSettings(address=broker.address, live_interval=0.05))
    yield served
    served.stop()


@pytest.fixture
def http(dashboard: Served) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=dashboard.url, timeout=20) as client:
        yield client


@pytest.fixture
def client(broker: RunningBroker) -> Iterator[Client]:
    """A client of the broker, to set up and check what the dashboard shows."""
    with Client(broker.address, token="") as made:
        yield made


@pytest.fixture(scope="session")
def gates(host: Host) -> Gates:
    return Gates(host.loop)


@pytest.fixture
def worker(host: Host, broker: RunningBroker, queue: str, gates: Gates) -> Iterator[Worker]:
    """The handlers of :func:`make_worker`, running on ``queue``."""
    made = make_worker(broker.address, queue, gates)
    task = asyncio.run_coroutine_threadsafe(made.serve(), host.loop)
    yield made
    host.run(made.stop(grace=0))
    task.result(timeout=15)


@dataclass
class Secured:
    """A broker with auth and a dashboard in front of it; ``token(...)`` makes tokens."""

    broker: Broker
    token_file: Path
    dashboard: Served
    made: list[str] = field(default_factory=list)
    ids: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.broker.port}"

    def token(self, *grants: str) -> str:
        token, entry = tokens.create(self.token_file, f"t{len(self.made)}", list(grants))
        self.broker.reload_tokens()
        self.made.append(token)
        self.ids[token] = entry.id
        return token

    def revoke(self, token: str) -> None:
        tokens.revoke(self.token_file, self.ids[token])
        self.broker.reload_tokens()


@pytest.fixture(scope="module")
def secured(
    host: Host, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Secured]:
    """A broker with a token file (rate limit 50/s per token) and a dashboard on it."""
    token_file = tmp_path_factory.mktemp("auth") / "tokens.toml"
    tokens.save(token_file, tokens.TokenBook())
    settings = replace(
        SETTINGS, redis_url=redis_url, auth_tokens_file=str(token_file), rate_limit=50.0
    )
    made = Broker(settings)
    host.run(made.start())
    served = serve_dashboard(DashboardSettings(address=f"127.0.0.1:{made.port}"))
    yield Secured(made, token_file, served)
    served.stop()
    host.run(made.stop(0.5))


def wait_until(check: Callable[[], T], timeout: float = 20, message: str = "") -> T:
    """``check()``'s first true answer, tried until ``timeout`` seconds pass."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {message or check}")
        time.sleep(0.02)
