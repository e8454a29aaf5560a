"""Fixtures of the CLI tests: one real broker (served from a background thread, since the CLI
is synchronous), the CLI runner pointed at it, and a bare worker made of WorkerService calls."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from .helpers import Cli, StubWorker, ThreadedBroker


@pytest.fixture(scope="session")
def cli_broker(redis_url: str) -> Iterator[ThreadedBroker]:
    """One broker for the CLI tests (each test still has its own queue)."""
    broker = ThreadedBroker(redis_url)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def cli(cli_broker: ThreadedBroker) -> Cli:
    return Cli(cli_broker.address)


@pytest.fixture
def stub_worker(cli_broker: ThreadedBroker) -> Iterator[StubWorker]:
    worker = StubWorker(cli_broker.address)
    try:
        yield worker
    finally:
        worker.close()


@pytest.fixture(autouse=True)
def root_logging() -> Iterator[None]:
    """``jobbroker work`` run in-process sets up the root logger on the runner's stderr, which
    closes after the command: put the test session's logging back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
