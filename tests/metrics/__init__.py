"""Metrics (the Prometheus endpoint) and structured logs of a real broker on real Redis."""
