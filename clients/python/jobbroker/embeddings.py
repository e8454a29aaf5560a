"""Decode the result of an embeddings job (``ai-tasks`` / ``generate-embeddings``).

The worker stores each vector as the embeddings API's own ``encoding_format=base64`` does:
base64 of the vector's float32 values, little-endian, one string per input, so a thousand
1,536-dimension vectors take 8 MB rather than the ~30 MB of JSON floats. In any language:
base64-decode, then read 4-byte little-endian IEEE 754 floats (NumPy:
``np.frombuffer(base64.b64decode(s), dtype="<f4")``; Node:
``new Float32Array(Buffer.from(s, "base64").buffer)`` on a little-endian machine).
"""

from __future__ import annotations

import base64
import sys
from array import array
from collections.abc import Mapping
from typing import Any

ENCODING = "base64-float32-le"
"""The ``encoding`` an embeddings result names."""


def decode_vector(value: str) -> list[float]:
    """One base64 float32 vector as floats."""
    raw = base64.b64decode(value)
    if len(raw) % 4:
        raise ValueError(f"{len(raw)} bytes are not a whole number of float32 values")
    floats = array("f", raw)
    if sys.byteorder != "little":
        floats.byteswap()
    return floats.tolist()


def decode_embeddings(result: Mapping[str, Any]) -> list[list[float]]:
    """The vectors of an embeddings job's result, in the order of its inputs.

    result = client.wait("ai-tasks", job_id)
    vectors = decode_embeddings(result)
    """
    encoding = result.get("encoding", ENCODING)
    if encoding != ENCODING:
        raise ValueError(f"unknown embeddings encoding {encoding!r}")
    return [decode_vector(value) for value in result["embeddings"]]
