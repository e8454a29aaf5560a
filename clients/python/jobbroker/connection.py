"""How to reach the broker: where it is, the API token and TLS (from arguments or the
environment, the same for the clients, the worker and the CLI), and opening the channel with
the one set of channel options they all use."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

DEFAULT_ADDRESS = "127.0.0.1:50051"

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest message sent or received: what the broker itself sends at most. gRPC's default
(4 MiB) is too small for bulk adds, a page of large jobs or a Lease reply of many."""

RECONNECT_MAX_S = 1.0
"""The longest wait between two attempts to reach a broker that is away, for the channel and
for a stream's reconnections alike: once a broker answers again, streams, ``wait()`` and
workers are back within about this long."""

KEEPALIVE_S = 20.0
"""Seconds between pings on a connection with calls open (see CHANNEL_OPTIONS)."""
KEEPALIVE_TIMEOUT_S = 10.0
"""Seconds a ping may go unanswered before the connection counts as dead."""

CHANNEL_OPTIONS: dict[str, Any] = {
    # Spread calls over every address the target resolves to (or lists).
    "grpc.lb_policy_name": "round_robin",
    # gRPC waits 1 s, then up to 120 s, between connection attempts: a broker restarting in a
    # second would stay unused for minutes. (Not grpc.min_reconnect_backoff_ms: despite its
    # name it is the least time a connection attempt is given, 20 s by default; cut to the
    # backoff, a link whose handshake takes longer than a second would never connect.)
    "grpc.initial_reconnect_backoff_ms": 100,
    "grpc.max_reconnect_backoff_ms": int(RECONNECT_MAX_S * 1000),
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    # A connection that died silently (a NAT or load balancer dropped it, a broker host lost
    # power) would otherwise hold a stream or a long poll until TCP gives up, many minutes
    # later: ping every KEEPALIVE_S while a call is open, and drop the connection when a ping
    # gets no answer within KEEPALIVE_TIMEOUT_S; the call then resumes on a new one. The broker
    # accepts pings this often (its grpc.http2.min_ping_interval_without_data_ms).
    "grpc.keepalive_time_ms": int(KEEPALIVE_S * 1000),
    "grpc.keepalive_timeout_ms": int(KEEPALIVE_TIMEOUT_S * 1000),
    # gRPC core (1.5x on) waits for a ping's answer by this one, a minute by default.
    "grpc.http2.ping_timeout_ms": int(KEEPALIVE_TIMEOUT_S * 1000),
    "grpc.http2.max_pings_without_data": 0,
}
"""The channel options of the clients and the worker; a caller's ``channel_options`` override
them one by one."""

ADDRESS_ENV = "JOBBROKER_ADDRESS"
TOKEN_ENV = "JOBBROKER_TOKEN"
TLS_ENV = "JOBBROKER_TLS"
TLS_CA_ENV = "JOBBROKER_TLS_CA"
TLS_CERT_ENV = "JOBBROKER_TLS_CERT"
TLS_KEY_ENV = "JOBBROKER_TLS_KEY"

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """Where the broker is and how to authenticate to it.

    :meth:`from_env` fills each setting from its argument when one is given, else from its
    environment variable, else the default: ``Client()``, ``AsyncClient()``, ``Worker()`` and
    the ``jobbroker`` CLI all read the same variables this way.
    """

    address: str | Sequence[str] | None = None
    """The broker (``host:port``, any gRPC target, or a list of IP ``host:port``);
    None: :data:`DEFAULT_ADDRESS`. Environment: ``JOBBROKER_ADDRESS``."""
    token: str | None = None
    """API token sent with every call (``jobbroker token create``); None or empty: none.
    Environment: ``JOBBROKER_TOKEN``."""
    tls: bool = False
    """Connect with TLS, trusting the system's CAs (implied by the files below).
    Environment: ``JOBBROKER_TLS`` (1/true/yes/on or 0/false/no/off)."""
    tls_ca: str | None = None
    """PEM file of the CA that signed the broker's certificate. Environment:
    ``JOBBROKER_TLS_CA``."""
    tls_cert: str | None = None
    """PEM file of this client's certificate, for mutual TLS. Environment:
    ``JOBBROKER_TLS_CERT``."""
    tls_key: str | None = None
    """PEM file of that certificate's key. Environment: ``JOBBROKER_TLS_KEY``."""
    credentials: grpc.ChannelCredentials | None = None
    """Ready-made TLS credentials; when set, the TLS settings above are not used."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Other ``(key, value)`` pairs sent with every call."""
    channel_options: tuple[tuple[str, Any], ...] = ()
    """Extra gRPC channel options; each overrides the one of that name in
    :data:`CHANNEL_OPTIONS`."""

    @classmethod
    def from_env(
        cls,
        *,
        address: str | Sequence[str] | None = None,
        token: str | None = None,
        tls: bool | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: Sequence[tuple[str, str]] = (),
        channel_options: Sequence[tuple[str, Any]] = (),
        environ: Mapping[str, str] | None = None,
    ) -> ConnectionSettings:
        """Each setting from its argument when not None, else from its ``JOBBROKER_*``
        variable (``environ``, default ``os.environ``), else its default. Ready-made
        ``credentials`` replace every TLS setting, the environment's included; ``metadata``
        and ``channel_options`` come from the arguments only."""
        env = os.environ if environ is None else environ

        def pick(given: str | None, name: str) -> str | None:
            return given if given is not None else (env.get(name) or None)

        if credentials is not None:
            tls, tls_ca, tls_cert, tls_key = True, None, None, None
        else:
            tls_ca = pick(tls_ca, TLS_CA_ENV)
            tls_cert = pick(tls_cert, TLS_CERT_ENV)
            tls_key = pick(tls_key, TLS_KEY_ENV)
            if tls is None:
                tls = _flag(env.get(TLS_ENV, ""), TLS_ENV)
        chosen: str | Sequence[str] | None = address
        if chosen is None or (isinstance(chosen, str) and not chosen):
            chosen = env.get(ADDRESS_ENV) or None
        return cls(
            address=chosen,
            token=pick(token, TOKEN_ENV),
            tls=tls,
            tls_ca=tls_ca,
            tls_cert=tls_cert,
            tls_key=tls_key,
            credentials=credentials,
            metadata=tuple(metadata),
            channel_options=tuple(channel_options),
        )

    @property
    def target(self) -> str:
        """The gRPC target of :attr:`address` (the default when not set)."""
        return target(DEFAULT_ADDRESS if self.address is None else self.address)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """The TLS credentials to connect with; None for plaintext. Raises ``ValueError``
        naming the settings when a PEM file cannot be read."""
        if self.credentials is not None:
            return self.credentials
        if not (self.tls or self.tls_ca or self.tls_cert or self.tls_key):
            return None
        try:
            return tls_credentials(self.tls_ca, self.tls_cert, self.tls_key)
        except OSError as exc:
            raise ValueError(
                f"TLS files (tls_ca/tls_cert/tls_key, {TLS_CA_ENV}/{TLS_CERT_ENV}/"
                f"{TLS_KEY_ENV}): {exc}"
            ) from None


def target(address: str | Sequence[str]) -> str:
    """The gRPC target for one address (``host:port`` or any gRPC target such as
    ``dns:///brokers:50051``) or several IP ``host:port`` addresses (a list, or one string
    separated by commas), which become one ``ipv4:``/``ipv6:`` target balanced round robin."""
    if isinstance(address, str):
        if "," not in address or ":///" in address or address.startswith(("ipv4:", "ipv6:")):
            return address
        address = address.split(",")
    addresses = [a.strip() for a in address if a.strip()]
    if not addresses:
        raise ValueError("address: give at least one broker address")
    if len(addresses) == 1:
        return addresses[0]
    versions = {_ip_version(a) for a in addresses}
    if len(versions) > 1:
        raise ValueError("address: do not mix IPv4 and IPv6 addresses in one list")
    return f"ipv{versions.pop()}:" + ",".join(addresses)


def _ip_version(address: str) -> int:
    host, _, port = address.rpartition(":")
    version: int
    try:
        version = ipaddress.ip_address(host.removeprefix("[").removesuffix("]")).version
    except ValueError:
        version = 0
    if not version or not port.isdigit():
        raise ValueError(
            f"address: {address!r} is not an IP:port address; a list of brokers must name IP "
            "addresses (for host names give one DNS name: calls are spread over its addresses)"
        )
    return version


def _flag(value: str, name: str) -> bool:
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: use 1, true, yes or on (or 0, false, no, off)")


class _Bearer:
    """Sends ``authorization: Bearer <token>`` with every call of the channel."""

    def __init__(self, token: str) -> None:
        self._pair = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), self._pair)
        return grpc.aio.ClientCallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
        )


# grpc.aio files each interceptor under the first kind it is, so one class per kind.
class _UnaryUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamUnary(_Bearer, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


class _StreamStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(token: str) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors sending ``token`` with every kind of call."""
    return [cls(token) for cls in (_UnaryUnary, _UnaryStream, _StreamUnary, _StreamStream)]


def channel_options(extra: Iterable[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """:data:`CHANNEL_OPTIONS`, overridden by the caller's."""
    options = dict(CHANNEL_OPTIONS)
    options.update(extra)
    return list(options.items())


def open_channel(
    target: str,
    *,
    credentials: grpc.ChannelCredentials | None,
    options: Sequence[tuple[str, Any]],
    token: str | None,
) -> grpc.aio.Channel:
    """A channel to ``target`` with ``options`` (see :func:`channel_options`): TLS with
    ``credentials``, else plaintext; ``token`` (an API token from ``jobbroker token create``)
    goes with every call."""
    interceptors = bearer_interceptors(token) if token else None
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=interceptors)


def tls_credentials(
    ca_file: str | None = None, cert_file: str | None = None, key_file: str | None = None
) -> grpc.ChannelCredentials:
    """TLS credentials from PEM files: the CA that signed the broker's certificate (default: the
    system's), and for mutual TLS this client's certificate and key."""
    if bool(cert_file) != bool(key_file):
        raise ValueError("give both a client certificate and its key, or neither")

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as handle:
            return handle.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca_file),
        private_key=read(key_file),
        certificate_chain=read(cert_file),
    )
