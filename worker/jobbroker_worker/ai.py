"""The ``ai-tasks`` processors: ``generate-completion`` (a chat completion, streamed to the
job's progress as it is written) and ``generate-embeddings``, through any OpenAI-compatible
API with the ``openai`` library's async client.

Failures go through one policy (retry.py): the client's own retries are off; 429 (after its
``Retry-After``), 5xx, lost connections and timeouts are retried inside the attempt; 400,
401/403, an unknown model and a content-policy refusal fail the job for good. Cancelling the
job (or its timeout) cancels the handler, which closes the HTTP response at once: the server
sees the connection close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol, cast

import openai
from jobbroker import JobContext, Worker

from .config import Config
from .metrics import ServiceMetrics
from .models import CompletionData, EmbeddingsData, parsed
from .retry import Permanent, Transient, deadline, retried
from .standin import MODEL as STANDIN_MODEL

log = logging.getLogger("jobbroker_worker.ai")

QUEUE = "ai-tasks"
MAX_INPUTS_PER_REQUEST = 2_048
"""The embeddings API's limit on inputs per request."""
MAX_RESULT_BYTES = 1_048_576
"""The broker's default --max-payload-bytes: a larger result would be refused at Complete."""
MAX_CHARS_PER_REQUEST = 600_000
"""About 300,000 tokens at 2 characters a token (the API's per-request limit is 300,000)."""


class ConversationStore(Protocol):
    """Where ``generate-completion`` gets a conversation's earlier turns and keeps the new
    reply: plug in your application's own store (``--conversation-store module:attr``)."""

    async def history(self, data: CompletionData) -> list[dict[str, str]]:
        """The earlier turns (OpenAI format: ``{"role", "content"}``), oldest first."""
        ...

    async def save(self, data: CompletionData, content: str) -> None:
        """Keep the assistant's reply (called before the job completes; may run again when
        the job is retried after a crash, so make it idempotent)."""
        ...


class JobHistory:
    """The default store: the history is what the job carries (``messages``); nothing kept."""

    async def history(self, data: CompletionData) -> list[dict[str, str]]:
        return [turn.model_dump() for turn in data.messages]

    async def save(self, data: CompletionData, content: str) -> None:
        return None


def _outcome(error: BaseException) -> str:
    if isinstance(error, openai.RateLimitError):
        return "rate_limited"
    if isinstance(error, openai.APITimeoutError):
        return "timeout"
    if isinstance(error, openai.APIConnectionError):
        return "connection_error"
    if isinstance(error, openai.AuthenticationError | openai.PermissionDeniedError):
        return "unauthorized"
    if isinstance(error, openai.NotFoundError):
        return "not_found"
    if isinstance(error, openai.APIStatusError) and error.status_code >= 500:
        return "server_error"
    return "bad_request"


def _retry_after(error: openai.APIStatusError) -> float | None:
    headers = error.response.headers
    with contextlib.suppress(TypeError, ValueError):
        if headers.get("retry-after-ms"):
            return float(headers["retry-after-ms"]) / 1000
        if headers.get("retry-after"):
            return float(headers["retry-after"])
    return None


def classified(error: openai.OpenAIError) -> Exception:
    """The error as :class:`Transient` (retry) or :class:`Permanent` (fail for good)."""
    if isinstance(error, openai.APIConnectionError):  # timeouts included
        return Transient(f"{type(error).__name__}: {error}")
    if isinstance(error, openai.APIStatusError):
        status = error.status_code
        if status == 429 or status >= 500 or status in (408, 409):
            retry_after = _retry_after(error) if status == 429 else None
            return Transient(f"API {status}: {error.message}", retry_after)
        code = f" ({error.code})" if getattr(error, "code", None) else ""
        what = {401: "the API key was refused", 403: "the API key may not do this"}.get(status)
        detail = f"{what}: {error.message}" if what else error.message
        return Permanent(f"API {status}{code}: {detail}")
    return Permanent(f"{type(error).__name__}: {error}")


class Deltas:
    """A completion's text as it arrives, reported as progress values
    ``{"delta", "tokens", "seq"}`` with none lost: the worker SDK keeps only the latest
    progress between two sends, so a report goes out only once the previous one reached the
    broker, and the deltas that arrived meanwhile travel together in it. A retry after a
    broken stream starts the text again: its first report says ``"restart": true``."""

    def __init__(self, ctx: JobContext) -> None:
        self.ctx = ctx
        self.parts: list[str] = []
        self.tokens = 0
        self._sent = 0
        self._seq = 0
        self._restart = False
        self._flushing: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def restart(self) -> None:
        """A new try: forget the text of the last one (its reports said it already)."""
        self._restart = self._seq > 0
        self.parts, self.tokens, self._sent = [], 0, 0

    def add(self, delta: str) -> None:
        self.parts.append(delta)
        self.tokens += 1
        if self._flushing is None or self._flushing.done():
            self._report()

    async def finish(self) -> None:
        """Report what is left, and wait until every report reached the broker."""
        if self._flushing is not None:
            await self._flushing
        if self._sent < len(self.text):
            self._report()
            assert self._flushing is not None
            await self._flushing

    def stop(self) -> None:
        if self._flushing is not None and not self._flushing.done():
            self._flushing.cancel()

    def _report(self) -> None:
        text = self.text
        self._seq += 1
        value: dict[str, Any] = {"delta": text[self._sent :], "tokens": self.tokens}
        value["seq"] = self._seq
        if self._restart:
            value["restart"], self._restart = True, False
        self.ctx.progress(value=value)
        self._sent = len(text)
        self._flushing = asyncio.ensure_future(self.ctx.flush())


class AiTasks:
    """The ai-tasks handlers over one AsyncOpenAI client."""

    def __init__(
        self,
        config: Config,
        metrics: ServiceMetrics,
        store: ConversationStore | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.store: ConversationStore = store or JobHistory()
        self.client = openai.AsyncOpenAI(
            api_key=api_key or config.openai_api_key,
            base_url=base_url or config.openai_base_url or None,
            max_retries=0,  # one policy: ours (retry.py)
            timeout=config.request_timeout,
        )

    def register(self, worker: Worker) -> None:
        worker.handler("generate-completion", schema=CompletionData)(self.complete)
        worker.handler("generate-embeddings", schema=EmbeddingsData)(self.embed)

    async def close(self) -> None:
        await self.client.close()

    async def _request(self, endpoint: str, ctx: JobContext, call: Any) -> Any:
        """``call()`` under the retry policy, each try counted in the metrics."""

        async def attempt() -> Any:
            try:
                result = await call()
            except openai.OpenAIError as error:
                self.metrics.requests.labels(endpoint, _outcome(error)).inc()
                raise classified(error) from error
            except asyncio.CancelledError:
                self.metrics.requests.labels(endpoint, "cancelled").inc()
                raise
            self.metrics.requests.labels(endpoint, "ok").inc()
            return result

        def on_retry(error: Transient, wait: float) -> None:
            ctx.log(f"{endpoint}: {error}; trying again in {wait:.1f} s")

        until = deadline(ctx, self.config.retry_budget)
        return await retried(attempt, until, on_retry)

    # --- generate-completion ---------------------------------------------------------------

    async def complete(self, ctx: JobContext) -> dict[str, Any]:
        data: CompletionData = parsed(CompletionData, ctx)
        messages: list[dict[str, str]] = []
        if data.system:
            messages.append({"role": "system", "content": data.system})
        messages += await self.store.history(data)
        messages.append({"role": "user", "content": data.message})
        model = data.model or self.config.model
        deltas = Deltas(ctx)
        reply = await self._request(
            "chat", ctx, lambda: self._stream(ctx, model, data, messages, deltas)
        )
        await self.store.save(data, reply["content"])
        return {"conversationId": data.conversationId, **reply}

    async def _stream(
        self,
        ctx: JobContext,
        model: str,
        data: CompletionData,
        messages: list[dict[str, str]],
        deltas: Deltas,
    ) -> dict[str, Any]:
        """One streamed request; each delta goes out as progress (see :class:`Deltas`)."""
        deltas.restart()
        finish = ""
        usage: Any = None
        answered_model = model
        stream = await self.client.chat.completions.create(
            model=model,
            messages=cast(Any, messages),
            max_tokens=data.maxTokens,
            temperature=data.temperature,
            stream=True,
            stream_options={"include_usage": True},
        )
        try:
            async with stream:
                async for chunk in stream:
                    answered_model = chunk.model or answered_model
                    if chunk.usage is not None:
                        usage = chunk.usage
                    if not chunk.choices:
                        continue
                    choice = chunk.choices[0]
                    if choice.delta.content:
                        deltas.add(choice.delta.content)
                    if choice.finish_reason:
                        finish = choice.finish_reason
            await deltas.finish()
        finally:
            deltas.stop()
        tokens = deltas.tokens
        content = deltas.text
        if finish == "content_filter":
            raise Permanent("the model refused: its content filter stopped the answer")
        result: dict[str, Any] = {
            "content": content,
            "tokens": usage.completion_tokens if usage is not None else tokens,
            "model": answered_model,
            "finishReason": finish or "stop",
        }
        if usage is not None:
            result["usage"] = {
                "promptTokens": usage.prompt_tokens,
                "completionTokens": usage.completion_tokens,
                "totalTokens": usage.total_tokens,
            }
            self.metrics.tokens.labels(answered_model, "prompt").inc(usage.prompt_tokens)
            self.metrics.tokens.labels(answered_model, "completion").inc(usage.completion_tokens)
        if answered_model == STANDIN_MODEL:
            result["standIn"] = True
            result["note"] = "written by the local stand-in model, not a real model"
        return result

    # --- generate-embeddings ---------------------------------------------------------------

    async def embed(self, ctx: JobContext) -> dict[str, Any]:
        data: EmbeddingsData = parsed(EmbeddingsData, ctx)
        texts = [data.input] if isinstance(data.input, str) else list(data.input)
        if any(not text for text in texts):
            raise Permanent("data.input: texts must not be empty")
        model = data.model or self.config.embedding_model
        chunks = list(_chunks(texts, min(self.config.embedding_batch, MAX_INPUTS_PER_REQUEST)))
        vectors: list[str] = []
        prompt_tokens = 0
        answered_model = model
        for number, chunk in enumerate(chunks, 1):
            extra: dict[str, Any] = {"dimensions": data.dimensions} if data.dimensions else {}

            async def call(chunk: list[str] = chunk, extra: dict[str, Any] = extra) -> Any:
                return await self.client.embeddings.create(
                    model=model, input=chunk, encoding_format="base64", **extra
                )

            reply = await self._request("embeddings", ctx, call)
            answered_model = reply.model or answered_model
            ordered = sorted(reply.data, key=lambda item: item.index)
            vectors += [str(item.embedding) for item in ordered]
            prompt_tokens += reply.usage.prompt_tokens if reply.usage else 0
            ctx.progress(
                percent=100.0 * number / len(chunks),
                value={"chunk": number, "of": len(chunks), "embedded": len(vectors)},
            )
        self.metrics.tokens.labels(answered_model, "prompt").inc(prompt_tokens)
        dimensions = len(_b64_length(vectors[0])) if vectors else 0
        result: dict[str, Any] = {
            "model": answered_model,
            "encoding": "base64-float32-le",
            "dimensions": dimensions,
            "count": len(vectors),
            "embeddings": vectors,
            "usage": {"promptTokens": prompt_tokens, "totalTokens": prompt_tokens},
        }
        if answered_model == STANDIN_MODEL:
            result["standIn"] = True
        size = sum(len(v) for v in vectors) + 300
        if size > MAX_RESULT_BYTES:
            per_job = max(1, len(vectors) * MAX_RESULT_BYTES // size)
            raise Permanent(
                f"{len(vectors)} vectors of {dimensions} dimensions make a {size}-byte result, "
                f"over the broker's default payload limit ({MAX_RESULT_BYTES}); add jobs of at "
                f"most {per_job} texts each"
            )
        return result


def _b64_length(value: str) -> range:
    """A range as long as the float32 vector ``value`` (base64) holds."""
    padding = value.count("=", len(value) - 2)
    return range((len(value) * 3 // 4 - padding) // 4)


def _chunks(texts: list[str], most: int) -> list[list[str]]:
    """Consecutive groups within the API's limits on inputs and size per request."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        if current and (len(current) >= most or size + len(text) > MAX_CHARS_PER_REQUEST):
            groups.append(current)
            current, size = [], 0
        current.append(text)
        size += len(text)
    if current:
        groups.append(current)
    return groups
