"""What a job data schema costs an Add: the same Adds, 100 in flight, to a queue without a
schema and to one whose job name has the guide's completion schema (docs/schemas.md).

    python bench/schema_cost.py [--adds 20000] [--rounds 3] [--redis-url URL]

Starts one broker process; runs the two cases in alternating rounds (so a burst of load from
another process on a shared machine hits both alike) and prints, per case, Adds per second
and the broker's CPU microseconds per Add (from /proc: the load-insensitive measure), the
median over the rounds, and the cost of the schema in percent of each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid

import grpc
from jobbroker.v1 import job_pb2, job_service_pb2, job_service_pb2_grpc, queue_service_pb2_grpc
from jobbroker.v1 import queue_service_pb2 as qpb
from support import process_cpu, remove_queue, start_broker

IN_FLIGHT = 100
NAME = "generate-completion"
DATA = {
    "userId": "user-42",
    "conversationId": "conv-7",
    "message": "Summarise the meeting notes in three bullet points.",
    "model": "gpt-4",
    "maxTokens": 4096,
    "temperature": 0.7,
}
# What jobbroker-worker registers for generate-completion (pydantic's JSON Schema of it).
SCHEMA = {
    "type": "object",
    "title": "CompletionData",
    "required": ["userId", "conversationId", "message"],
    "properties": {
        "userId": {"type": "string", "minLength": 1, "maxLength": 256},
        "conversationId": {"type": "string", "minLength": 1, "maxLength": 256},
        "message": {"type": "string", "minLength": 1},
        "model": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "maxTokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "system": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role", "content"],
                "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
            },
        },
    },
}


async def _adds(stub: job_service_pb2_grpc.JobServiceStub, queue: str, count: int) -> None:
    request = job_service_pb2.AddRequest(
        queue=queue, name=NAME, data=job_pb2.Payload(body=json.dumps(DATA).encode())
    )
    left = count

    async def one_lane() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await stub.Add(request)

    await asyncio.gather(*(one_lane() for _ in range(IN_FLIGHT)))


async def run(address: str, pid: int, adds: int, rounds: int, queues: dict[str, str]) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        jobs = job_service_pb2_grpc.JobServiceStub(channel)
        admin = queue_service_pb2_grpc.QueueServiceStub(channel)
        await admin.SetJobSchema(
            qpb.SetJobSchemaRequest(queue=queues["schema"], name=NAME, schema=json.dumps(SCHEMA))
        )
        for queue in queues.values():
            await _adds(jobs, queue, 2_000)  # warm up: connections, caches, the JIT-less paths
        results: dict[str, list[tuple[float, float]]] = {case: [] for case in queues}
        for number in range(rounds):
            # Alternate which case goes first: the second of a pair runs on a warmer broker.
            order = list(queues.items()) if number % 2 == 0 else list(queues.items())[::-1]
            for case, queue in order:
                cpu, started = process_cpu(pid), time.perf_counter()
                await _adds(jobs, queue, adds)
                elapsed, used = time.perf_counter() - started, process_cpu(pid) - cpu
                results[case].append((adds / elapsed, used / adds * 1e6))
                print(
                    f"  round {number + 1} {case:>6}: {results[case][-1][0]:6.0f} adds/s, "
                    f"{results[case][-1][1]:5.1f} us CPU per add"
                )
    rate = {case: statistics.median(r for r, _ in rows) for case, rows in results.items()}
    cpu_us = {case: statistics.median(c for _, c in rows) for case, rows in results.items()}
    for case in queues:
        print(f"{case:>9}: {rate[case]:8.0f} adds/s, broker {cpu_us[case]:5.1f} us CPU per add")
    print(
        f"schema cost: {100 * (cpu_us['schema'] / cpu_us['none'] - 1):+.1f} % broker CPU per "
        f"add, {100 * (1 - rate['schema'] / rate['none']):+.1f} % adds/s "
        f"({IN_FLIGHT} in flight, {adds} adds x {rounds} rounds, medians)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--adds", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    token = uuid.uuid4().hex[:8]
    queues = {"none": f"bench-schema-none-{token}", "schema": f"bench-schema-{token}"}
    proc, address = start_broker(redis_url=args.redis_url)
    try:
        asyncio.run(run(address, proc.pid, args.adds, args.rounds, queues))
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        for queue in queues.values():
            remove_queue(args.redis_url, queue)


if __name__ == "__main__":
    main()
