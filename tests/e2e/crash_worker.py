"""A worker that leases one job, reports progress, then hangs until it is killed.

Usage: ``python crash_worker.py ADDRESS QUEUE``. Once its progress is acknowledged it prints one
JSON line (worker_id, job_id, token, fence, attempt) on stdout and never renews its lease again.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import time
from collections.abc import Iterator

import grpc
from jobbroker.v1 import worker_service_pb2 as ws
from jobbroker.v1 import worker_service_pb2_grpc

LEASE_MS = 1_000


def main(address: str, queue_name: str) -> None:
    worker_id = f"crash-worker-{os.getpid()}"
    channel = grpc.insecure_channel(address)
    stub = worker_service_pb2_grpc.WorkerServiceStub(channel)
    reply = stub.Lease(
        ws.LeaseRequest(queue=queue_name, worker_id=worker_id, wait_ms=10_000, lease_ms=LEASE_MS),
        timeout=15,
    )
    if not reply.jobs:
        sys.exit("crash_worker: no job to lease")
    job = reply.jobs[0]

    outbox: queue.Queue[ws.ReportProgressRequest] = queue.Queue()

    def requests() -> Iterator[ws.ReportProgressRequest]:
        while True:
            yield outbox.get()

    responses = stub.ReportProgress(requests())
    outbox.put(
        ws.ReportProgressRequest(
            worker_id=worker_id,
            seq=1,
            queues=[queue_name],
            updates=[
                ws.LeaseUpdate(
                    queue=queue_name,
                    job_id=job.job_id,
                    token=job.token,
                    percent=10.0,
                    log_lines=["started"],
                )
            ],
        )
    )
    for response in responses:
        if response.seq == 1:
            if response.leases[0].HasField("error"):
                sys.exit(f"crash_worker: progress refused: {response.leases[0].error}")
            break
    print(
        json.dumps(
            {
                "worker_id": worker_id,
                "job_id": job.job_id,
                "token": job.token,
                "fence": job.fence,
                "attempt": job.attempt,
            }
        ),
        flush=True,
    )
    while True:  # the job "runs" forever: no renewal, no outcome
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
