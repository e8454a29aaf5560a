"""The standalone worker processes and their built-in workers.

- :mod:`jobbroker_worker.demo`: the demo worker (queue ``demo``).
- :mod:`jobbroker_worker.service`: ``jobbroker-worker``, the guide's processors
  (docs/worker-service.md): :mod:`~jobbroker_worker.ai` (``ai-tasks``),
  :mod:`~jobbroker_worker.mail` (``email``), their data :mod:`~jobbroker_worker.models`,
  :mod:`~jobbroker_worker.config`, the :mod:`~jobbroker_worker.retry` policy and
  :mod:`~jobbroker_worker.metrics`.
- :mod:`jobbroker_worker.standin`: the OpenAI-compatible stand-in model server.
- :mod:`jobbroker_worker.mailsink`: a local SMTP server that keeps what it gets.
- :mod:`jobbroker_worker.tour`: what ``jobbroker serve --demo`` runs beside the broker.
"""
