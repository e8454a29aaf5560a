"""Generated gRPC stubs of jobbroker.v1 (do not edit; run scripts/gen_protos.py)."""
