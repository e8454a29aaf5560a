"""Fixtures of the Lua contract tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from .helpers import LuaQueue


@pytest.fixture
def lua(r: redis.Redis, queue: str) -> Iterator[LuaQueue]:
    """This test's queue, driven through the scripts; its keys are deleted afterwards."""
    driver = LuaQueue(r, queue)
    yield driver
    driver.delete_all()
