"""Testing kit for users' handlers and workers.

- :class:`TestJob`: a :class:`~jobbroker.JobContext` test double. A handler runs on it with no
  broker; it records progress and log lines, gives the outcome as the worker would report it,
  and can cancel, time out or shut down the attempt.
- :class:`TestClock`: the ``jobbroker_clock`` fixture of the pytest plugin; moves the test
  broker's time forward for the test's queues, so delays, backoffs, leases and schedules come
  due without sleeping.
"""

from ._clock import TestClock
from ._double import TEST_WORKER_ID, Outcome, TestJob

__all__ = ["TEST_WORKER_ID", "Outcome", "TestClock", "TestJob"]
