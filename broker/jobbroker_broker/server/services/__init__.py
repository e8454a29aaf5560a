"""Thin gRPC servicers: decode the request, call the store, encode the reply."""
