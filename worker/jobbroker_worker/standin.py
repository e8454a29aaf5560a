"""A small OpenAI-compatible HTTP server with a stand-in model: what ``jobbroker-worker`` talks
to when no ``OPENAI_API_KEY`` is set (the demo), and what the tests drive the unmodified
``openai`` library against.

It speaks the real wire format of the endpoints the guide's jobs use:

- ``POST /v1/chat/completions``: a JSON ``chat.completion``, or with ``stream: true`` server-sent
  events (``data: {chat.completion.chunk}``, a usage chunk when ``stream_options.include_usage``,
  then ``data: [DONE]``) over a chunked HTTP/1.1 response;
- ``POST /v1/embeddings``: vectors as JSON floats or, with ``encoding_format: base64``, as
  base64 of little-endian float32, as the API sends them;
- ``GET /v1/models``; errors as ``{"error": {"message", "type", "param", "code"}}``.

The model is a word-level Markov chain over a short built-in text: it writes fluent-looking
nonsense, one word per token, and every reply's ``model`` says ``jobbroker-standin`` so
nobody takes it for a real model. Embeddings are deterministic unit vectors hashed from the
text. :class:`Fault` entries make the next requests fail (429 with ``Retry-After``, 500, a
slow or dropped stream, a 400...), and :attr:`StandIn.disconnects` records every stream whose
client went away before its end.

    python -m jobbroker_worker.standin --port 8000   # then OPENAI_BASE_URL=http://127.0.0.1:8000/v1
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import math
import random
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

MODEL = "jobbroker-standin"
"""The ``model`` of every reply: a label, whatever model was asked for."""
DEFAULT_DIMENSIONS = 256

CORPUS = """
A queue holds the work that a request should not wait for. The broker keeps every job in Redis
and hands it to a worker that asks for it. The worker streams its progress back, and the caller
follows the job until it ends. A job that fails is tried again after a short wait, and the wait
grows with every attempt. A worker that dies loses its lease, and the job goes back to the
queue for another worker. Progress is a number or a value, so a worker can send the words of an
answer as it writes them. The answer arrives word by word, and the caller sees it grow. Every
email is sent once, because the worker records the message before it reports the job done.
Embeddings turn a text into a vector, and similar texts get vectors that point the same way.
The stand-in model writes these sentences in a new order, so the tour needs no network and no
key. A real model would answer the question; this one only shows how the tokens travel.
"""


def _chain() -> dict[str, list[str]]:
    words = CORPUS.split()
    chain: dict[str, list[str]] = {}
    for first, second in itertools.pairwise(words):
        chain.setdefault(first, []).append(second)
    return chain


_CHAIN = _chain()
_STARTS = [w for w in _CHAIN if w[0].isupper()]


def generate(prompt: str, max_tokens: int) -> tuple[list[str], str]:
    """The stand-in's reply to ``prompt``: its tokens (words with their spacing) and the finish
    reason (``stop`` at the end of a sentence, ``length`` at ``max_tokens``). Deterministic."""
    rng = random.Random(hashlib.sha256(prompt.encode()).digest())
    word = rng.choice(_STARTS)
    tokens: list[str] = []
    while len(tokens) < max_tokens:
        tokens.append(word if not tokens else " " + word)
        if word.endswith(".") and len(tokens) >= 12:
            return tokens, "stop"
        word = rng.choice(_CHAIN.get(word) or _STARTS)
    return tokens, "length"


def embed(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    seed = hashlib.sha256(text.encode()).digest()
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        block = hashlib.sha256(seed + counter.to_bytes(4, "little")).digest()
        values.extend((b - 127.5) / 127.5 for b in block)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def count_tokens(text: str) -> int:
    """The stand-in's token count: one per word."""
    return max(1, len(text.split()))


@dataclass
class Fault:
    """What the next request (to chat or embeddings) gets instead of a normal answer."""

    status: int = 0
    """Answer this HTTP status with an OpenAI error body (0: answer normally)."""
    retry_after: float | None = None
    """The ``Retry-After`` header (seconds) of the error answer."""
    code: str = ""
    """The error's ``code`` (``rate_limit_exceeded``, ``content_policy_violation``...)."""
    message: str = ""
    drop_after: int | None = None
    """Close the connection after this many SSE chunks, without ``[DONE]``."""
    delay: float = 0.0
    """Seconds before each SSE chunk (a slow stream)."""
    finish_reason: str = ""
    """Finish with this reason (``content_filter``) instead of the model's."""


@dataclass
class Seen:
    """A request the stand-in received."""

    path: str
    body: Any
    headers: dict[str, str]
    at: float


@dataclass
class StandIn:
    """The server. ``await start()`` (port 0 picks a free one), then :attr:`base_url`."""

    host: str = "127.0.0.1"
    port: int = 0
    known_models: set[str] | None = None
    """Models that exist; None: any model name is answered."""
    delay: float = 0.0
    """Seconds before each SSE chunk, for every stream (a visibly streaming demo)."""
    faults: list[Fault] = field(default_factory=list)
    """Consumed one per chat or embeddings request, oldest first."""
    requests: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)
    """The completion id of each stream whose client closed the connection before its end."""
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.Server | None = None
    _ids: Iterator[int] = field(default_factory=itertools.count)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def __aenter__(self) -> StandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- HTTP/1.1 -------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    return
                method, path, headers, body = request
                keep = await self._answer(reader, writer, method, path, headers, body)
                if not keep:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
    ) -> bool:
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            return await _send_error(writer, 400, "the body is not valid JSON")
        self.requests.append(Seen(path, body, headers, time.monotonic()))
        path = path.split("?", 1)[0].rstrip("/")
        if method == "GET" and path == "/v1/models":
            names = sorted(self.known_models or {MODEL})
            return await _send_json(
                writer, 200, {"object": "list", "data": [_model(n) for n in names]}
            )
        if method != "POST" or path not in ("/v1/chat/completions", "/v1/embeddings"):
            return await _send_error(writer, 404, f"no route {method} {path}", "not_found")
        if not headers.get("authorization", "").startswith("Bearer "):
            return await _send_error(writer, 401, "no API key given", "invalid_api_key")
        fault = self.faults.pop(0) if self.faults else Fault()
        if fault.status:
            extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after else {}
            message = fault.message or f"stand-in fault {fault.status}"
            return await _send_error(writer, fault.status, message, fault.code, extra)
        if not isinstance(body, dict):
            return await _send_error(writer, 400, "the body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return await _send_error(writer, 400, "you must provide a model parameter", "", {})
        if self.known_models is not None and model not in self.known_models:
            message = f"The model `{model}` does not exist or you do not have access to it."
            return await _send_error(writer, 404, message, "model_not_found")
        if path == "/v1/embeddings":
            return await self._embeddings(writer, body)
        return await self._chat(reader, writer, body, fault)

    async def _embeddings(self, writer: asyncio.StreamWriter, body: dict[str, Any]) -> bool:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            return await _send_error(writer, 400, "input must be a string or strings", "", {})
        if len(texts) > 2048:
            return await _send_error(writer, 400, "input has more than 2048 items", "", {})
        dimensions = body.get("dimensions") or DEFAULT_DIMENSIONS
        base64_wanted = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed(text, int(dimensions))
            value: Any = vector
            if base64_wanted:
                value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": value})
        tokens = sum(count_tokens(t) for t in texts)
        return await _send_json(
            writer,
            200,
            {
                "object": "list",
                "data": data,
                "model": MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    async def _chat(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        body: dict[str, Any],
        fault: Fault,
    ) -> bool:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return await _send_error(writer, 400, "messages must be a non-empty array", "", {})
        prompt = "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or 256
        tokens, finish = generate(prompt, int(limit))
        finish = fault.finish_reason or finish
        usage = {
            "prompt_tokens": count_tokens(prompt),
            "completion_tokens": len(tokens),
            "total_tokens": count_tokens(prompt) + len(tokens),
        }
        reply_id = f"chatcmpl-standin-{next(self._ids)}"
        created = int(time.time())
        if not body.get("stream"):
            message = {"role": "assistant", "content": "".join(tokens)}
            choice = {"index": 0, "message": message, "finish_reason": finish}
            reply = _completion(reply_id, created, "chat.completion", [choice])
            reply["usage"] = usage
            return await _send_json(writer, 200, reply)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return await self._stream(
            reader,
            writer,
            reply_id,
            created,
            tokens,
            finish,
            usage if include_usage else None,
            fault,
        )

    async def _stream(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reply_id: str,
        created: int,
        tokens: list[str],
        finish: str,
        usage: dict[str, int] | None,
        fault: Fault,
    ) -> bool:
        head = (
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            "cache-control: no-cache\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        )
        writer.write(head.encode())
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        deltas += [{"content": token} for token in tokens]
        events = [
            _completion(reply_id, created, "chat.completion.chunk", [_choice(delta, None)])
            for delta in deltas
        ]
        events.append(
            _completion(reply_id, created, "chat.completion.chunk", [_choice({}, finish)])
        )
        if usage is not None:
            last = _completion(reply_id, created, "chat.completion.chunk", [])
            last["usage"] = usage
            events.append(last)
        # The client may close the connection at any moment (a cancelled job): watch for it,
        # so the stream stops at once and the disconnect is recorded.
        gone = asyncio.ensure_future(reader.read(1))
        delay = fault.delay or self.delay
        try:
            for sent, event in enumerate(events):
                if fault.drop_after is not None and sent >= fault.drop_after:
                    return False  # the connection closes mid-stream, without [DONE]
                if delay:
                    await asyncio.wait([gone], timeout=delay)
                if gone.done():
                    self.disconnects.append(reply_id)
                    self.disconnected.set()
                    return False
                _chunk(writer, b"data: " + orjson.dumps(event) + b"\n\n")
                await writer.drain()
            _chunk(writer, b"data: [DONE]\n\n")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            # Closed after each stream (`connection: close`): the watch above may have read a
            # byte of a next request on a kept-alive connection.
            return False
        except ConnectionError:
            self.disconnects.append(reply_id)
            self.disconnected.set()
            return False
        finally:
            if not gone.done():
                gone.cancel()
            elif not gone.cancelled():
                gone.exception()  # retrieved: a reset connection is an ordinary end here


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "jobbroker-standin"}


def _completion(reply_id: str, created: int, kind: str, choices: list[Any]) -> dict[str, Any]:
    return {"id": reply_id, "object": kind, "created": created, "model": MODEL, "choices": choices}


def _choice(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}


def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return method, path, headers, body


async def _send_json(
    writer: asyncio.StreamWriter, status: int, value: Any, extra: dict[str, str] | None = None
) -> bool:
    body = orjson.dumps(value)
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}", "content-type: application/json"]
    lines += [f"{k}: {v}" for k, v in (extra or {}).items()]
    lines.append(f"content-length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    await writer.drain()
    return True


async def _send_error(
    writer: asyncio.StreamWriter,
    status: int,
    message: str,
    code: str = "",
    extra: dict[str, str] | None = None,
) -> bool:
    kind = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "invalid_request_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    error = {"message": message, "type": kind, "param": None, "code": code or None}
    return await _send_json(writer, status, {"error": error}, extra)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def main() -> None:
    parser = argparse.ArgumentParser(description="An OpenAI-compatible stand-in model server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--delay", type=float, default=0.05, help="Seconds between tokens.")
    args = parser.parse_args()

    async def serve() -> None:
        server = StandIn(args.host, args.port, delay=args.delay)
        await server.start()
        print(f"stand-in model (not a real model) at {server.base_url}", flush=True)
        await asyncio.Event().wait()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
