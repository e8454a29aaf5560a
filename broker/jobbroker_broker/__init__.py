"""The jobbroker broker service (not imported by users: run it with ``jobbroker-broker``)."""
