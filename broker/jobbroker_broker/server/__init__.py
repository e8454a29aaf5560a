"""The gRPC server: the servicers (:mod:`.services`), the gate that admits calls (auth, tokens,
limits), the interceptors, the RPC metrics and the metrics endpoint, health, request
validation, and :mod:`.app`, which builds the server and starts the loops.

The server uses :mod:`jobbroker_broker.loops` and :mod:`jobbroker_broker.storage`; neither
imports the server.
"""
