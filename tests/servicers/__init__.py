"""The broker's own servicers, driven through grpcio-testing without a network (aio_bridge.py)."""
