"""jobbroker: a gRPC job broker on Redis. The generated stubs live in ``jobbroker.v1``."""

__version__ = "0.1.0"
