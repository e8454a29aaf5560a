"""Calls on a grpc_testing server of the broker's services, and how they ended."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import grpc_testing
import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2

DOMAIN = "jobbroker.v1"
DETAILS_KEY = "grpc-status-details-bin"
Metadata = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Ended:
    """How a call ended. Read like a ``grpc.RpcError`` (``code()``, ``details()``,
    ``trailing_metadata()``), so the Python client's own decoder takes it."""

    responses: tuple[Any, ...]
    status: grpc.StatusCode
    message: str
    trailing: tuple[tuple[str, Any], ...]

    def code(self) -> grpc.StatusCode:
        return self.status

    def details(self) -> str:
        return self.message

    def trailing_metadata(self) -> tuple[tuple[str, Any], ...]:
        return self.trailing

    @property
    def response(self) -> Any:
        """The one response of a unary call that succeeded."""
        assert self.status == grpc.StatusCode.OK, f"{self.status}: {self.message}"
        [response] = self.responses
        return response


def bearer(token: str) -> Metadata:
    return [("authorization", f"Bearer {token}")]


class Caller:
    """Calls ``Service.Method`` (``"JobService.Add"``) on a grpc_testing server."""

    def __init__(self, server: grpc_testing.Server) -> None:
        self.server = server
        self.pool = descriptor_pool.Default()

    def call(self, method: str, request: Message | bytes, metadata: Metadata = ()) -> Ended:
        """A unary call, or a server stream read to its end."""
        descriptor = self.pool.FindMethodByName(f"jobbroker.v1.{method}")
        if descriptor.server_streaming:
            return self.rest(self.open_stream(method, request, metadata))
        rpc = self.server.invoke_unary_unary(descriptor, metadata, request, None)
        response, trailing, code, details = rpc.termination()
        return Ended(() if response is None else (response,), code, details, tuple(trailing))

    def open_stream(self, method: str, request: Message | bytes, metadata: Metadata = ()) -> Any:
        """A server stream, to read with ``take_response()`` and end with :meth:`rest`."""
        descriptor = self.pool.FindMethodByName(f"jobbroker.v1.{method}")
        return self.server.invoke_unary_stream(descriptor, metadata, request, None)

    def rest(self, rpc: Any) -> Ended:
        """What is left of a stream, read to its end, and how it ended."""
        responses = _drain(rpc)
        trailing, code, details = rpc.termination()
        return Ended(tuple(responses), code, details, tuple(trailing))

    def bidi(self, method: str, requests: Iterable[Message], metadata: Metadata = ()) -> Ended:
        """A bidirectional stream: send ``requests``, close, read to the end."""
        descriptor = self.pool.FindMethodByName(f"jobbroker.v1.{method}")
        rpc = self.server.invoke_stream_stream(descriptor, metadata, None)
        for request in requests:
            rpc.send_request(request)
        rpc.requests_closed()
        return self.rest(rpc)


def _drain(rpc: Any) -> list[Any]:
    responses = []
    while True:
        try:
            responses.append(rpc.take_response())
        except ValueError:  # grpc_testing's "No more responses!": the call has ended
            return responses


def error_info(ended: Ended) -> error_details_pb2.ErrorInfo:
    """The one ErrorInfo (domain jobbroker.v1) of a failed call's ``grpc-status-details-bin``,
    checked against its status code and details as tests/integration/test_validation.py checks
    it over the network."""
    raw = [value for key, value in ended.trailing if key == DETAILS_KEY]
    if len(raw) != 1:
        pytest.fail(f"{ended.status} {ended.message!r} carries no {DETAILS_KEY}")
    status = status_pb2.Status.FromString(raw[0])
    assert status.code == ended.status.value[0]
    assert status.message == ended.message
    infos = []
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            infos.append(info)
    assert len(infos) == 1, f"expected one ErrorInfo, got {status.details}"
    assert infos[0].domain == DOMAIN
    return infos[0]


def refused(ended: Ended, code: grpc.StatusCode, reason: str) -> dict[str, str]:
    """Assert the call ended with ``code`` and ErrorInfo ``reason``; its ErrorInfo metadata."""
    assert (ended.status, ended.responses) == (code, ()), ended.message
    info = error_info(ended)
    assert info.reason == reason, ended.message
    return dict(info.metadata)
