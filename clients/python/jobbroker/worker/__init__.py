"""The worker SDK: register handlers by job name, then serve.

    from jobbroker import Worker

    worker = Worker("emails", concurrency=10)

    @worker.handler("send")
    async def send(ctx):
        ctx.progress(50)
        return {"sent": True}

    worker.run()  # until SIGTERM / SIGINT, then a graceful shutdown

The worker is a gRPC client of WorkerService and never talks to Redis. See docs/worker.md.

Inside, the arrows run one way: :mod:`._worker` (the Worker) uses :mod:`._leasing` (asking
for jobs), :mod:`._jobs` (running them), :mod:`._stream` (the one bidirectional stream) and
:mod:`._threads`; :mod:`._jobs` uses :mod:`._runner` (one handler call) and :mod:`._context`
(what the handler sees); all of them share the records of :mod:`._lease` and the reports of
:mod:`._outcomes`. :mod:`.metrics` is public: the ``jobbroker-worker`` service exports the
same figures; so is :mod:`.collector`, the garbage collector's setting while serving, which
``Worker.run()`` and the service apply.
"""

from ._context import DoNotRetry, JobContext
from ._runner import Handler
from ._worker import Worker
from .collector import serving_gc
from .metrics import WorkerStats, serve_metrics

__all__ = [
    "DoNotRetry",
    "Handler",
    "JobContext",
    "Worker",
    "WorkerStats",
    "serve_metrics",
    "serving_gc",
]
