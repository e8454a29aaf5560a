"""The transport floor: a bare grpc.aio unary call between two Python processes, with no
project code: a generic-handler echo service (raw bytes, no protobuf) and a client that keeps
``--in-flight`` calls going for ``--duration`` seconds. Both sides on uvloop when it is there,
like the broker and the worker SDK.

Beside it, what a caller that does not batch gets from the broker: one ``Add`` RPC per job
through the generated stubs (no client library, so nothing gathers concurrent adds), as a
caller in another language sends them. Both answer the client's CPU seconds, so that the
runner can put the CPU per call of each side beside the rates.

    python -m bench.transport serve              # prints "listening on 127.0.0.1:PORT"
    python -m bench.transport call --address A --in-flight 100 --duration 3
    python -m bench.transport add --address BROKER --queue Q --in-flight 100 --duration 3
    python -m bench.transport call|add ... --rate 200 --count 1000   # latency of paced calls
    python -m bench.transport add --client ...   # the same through the Python client's add()

With ``--rate``, calls go out one at a time, each when due (``i / rate`` s after the first),
and the answer is the latency of each (p50, p99, max): what a single add costs a producer that
does not wait for others, beside the same for a bare unary call.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from bench.common import emit, latency_summary, now, run_loop

METHOD = "/bench.Echo/Echo"
PAYLOAD = b'{"queue":"bench","name":"noop","data":{"i":1,"t":1.0}}'
"""About the size of an Add request."""


def _identity(value: bytes) -> bytes:
    return value


async def _echo(request: bytes, context: Any) -> bytes:
    return request


async def serve() -> None:
    handler = grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(
                _echo, request_deserializer=_identity, response_serializer=_identity
            )
        },
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"echo listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


async def keep_calling(
    one: Callable[[], Awaitable[Any]], in_flight: int, duration: float
) -> dict[str, Any]:
    """``in_flight`` lanes, each awaiting ``one()`` again and again for ``duration`` seconds,
    after one call that connects; the count, the seconds, and this process's CPU seconds."""
    await one()
    deadline = now() + duration

    async def lane() -> int:
        calls = 0
        while now() < deadline:
            await one()
            calls += 1
        return calls

    cpu = time.process_time()
    started = now()
    counts = await asyncio.gather(*(lane() for _ in range(in_flight)))
    seconds = now() - started
    return {"count": sum(counts), "seconds": seconds, "cpu_s": time.process_time() - cpu}


async def paced(one: Callable[[], Awaitable[Any]], rate: float, count: int) -> dict[str, Any]:
    """``count`` calls, one at a time, call ``i`` sent ``i / rate`` seconds after the first
    (or at once when the previous one took longer): each call's latency."""
    await one()
    took: list[float] = []
    start = now()
    for i in range(count):
        delay = start + i / rate - now()
        if delay > 0:
            await asyncio.sleep(delay)
        sent = now()
        await one()
        took.append(now() - sent)
    return {"count": count, "seconds": now() - start, "latency": latency_summary(took)}


def drive(one: Callable[[], Awaitable[Any]], args: argparse.Namespace) -> Awaitable[dict[str, Any]]:
    if args.rate:
        return paced(one, args.rate, args.count)
    return keep_calling(one, args.in_flight, args.duration)


async def call(address: str, args: argparse.Namespace) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        echo = channel.unary_unary(
            METHOD, request_serializer=_identity, response_deserializer=_identity
        )
        return await drive(lambda: echo(PAYLOAD), args)


async def add(address: str, queue: str, args: argparse.Namespace) -> dict[str, Any]:
    # Imported here: the echo side needs none of the project.
    from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = job_service_pb2_grpc.JobServiceStub(channel)
        request = job_service_pb2.AddRequest(
            queue=queue,
            name="noop",
            data=job_pb2.Payload(body=b'{"i":1,"t":1.0}', content_type="application/json"),
        )
        if not args.client:
            return await drive(lambda: stub.Add(request), args)
    from jobbroker import AsyncClient

    async with AsyncClient(address) as client:
        data = {"i": 1, "t": 1.0}
        return await drive(lambda: client.add(queue, "noop", data), args)


def main() -> None:
    parser = argparse.ArgumentParser(description="the bare grpc.aio unary floor")
    parser.add_argument("command", choices=["serve", "call", "add"])
    parser.add_argument("--address", default="")
    parser.add_argument("--queue", default="", help="add: the queue")
    parser.add_argument("--in-flight", type=int, default=100)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--rate", type=float, default=0.0, help="paced calls per second")
    parser.add_argument("--count", type=int, default=1000, help="paced calls")
    parser.add_argument(
        "--client", action="store_true", help="add: through the Python client, not raw stubs"
    )
    args = parser.parse_args()
    if args.command == "serve":
        run_loop(serve())
    elif args.command == "add":
        emit(run_loop(add(args.address, args.queue, args)))
    else:
        emit(run_loop(call(args.address, args)))


if __name__ == "__main__":
    main()
