"""Testing kit for users' handlers and workers.

- :class:`TestJob`: a :class:`~jobbroker.JobContext` test double. A handler runs on it with no
  broker; it records progress and log lines, gives the outcome as the worker would report it,
  and can cancel, time out or shut down the attempt.
"""

from ._double import TEST_WORKER_ID, Outcome, TestJob

__all__ = ["TEST_WORKER_ID", "Outcome", "TestJob"]
