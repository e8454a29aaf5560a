"""Client and AsyncClient offer the same methods with the same parameters.

``Client``'s methods are made from ``AsyncClient``'s (``_sync.py``); a method added to
AsyncClient (or to its queue calls) and not to Client fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
from jobbroker import AsyncClient, Client


def public_methods(cls: type) -> dict[str, Callable[..., Any]]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    }


ASYNC_METHODS = public_methods(AsyncClient)


def test_the_two_clients_have_the_same_methods() -> None:
    assert sorted(public_methods(Client)) == sorted(ASYNC_METHODS)
    assert len(ASYNC_METHODS) > 25  # the inspection found the methods, not an empty list


def test_the_two_clients_take_the_same_arguments() -> None:
    assert inspect.signature(Client).parameters == inspect.signature(AsyncClient).parameters


@pytest.mark.parametrize("name", sorted(ASYNC_METHODS))
def test_each_method_takes_the_same_parameters(name: str) -> None:
    sync, asynchronous = getattr(Client, name), ASYNC_METHODS[name]
    assert inspect.signature(sync).parameters == inspect.signature(asynchronous).parameters
    assert not inspect.iscoroutinefunction(sync)
    assert not inspect.isasyncgenfunction(sync)
    assert sync.__doc__ == asynchronous.__doc__ or name == "close"


@pytest.mark.parametrize(
    "name", sorted(n for n, m in ASYNC_METHODS.items() if inspect.isasyncgenfunction(m))
)
def test_streams_are_plain_iterators_on_the_sync_client(name: str) -> None:
    returns = inspect.signature(getattr(Client, name)).return_annotation
    assert str(returns).startswith("Iterator[")
