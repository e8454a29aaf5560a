"""The standalone worker process (``jobbroker work MODULE:WORKER``) and its built-in workers.

- :mod:`jobbroker_worker.runner`: load a :class:`jobbroker.Worker` from a module and run it.
- :mod:`jobbroker_worker.demo`: the demo worker ``jobbroker serve --demo`` runs beside the broker.
"""
