"""The data of the guide's jobs, as pydantic models: ``jobbroker-worker`` parses each job with
its model, and registers the model's JSON Schema with the broker at start-up, so an Add of data
that does not fit is refused before it is stored (docs/schemas.md).

Field names are the guide's (camelCase) where it has them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from jobbroker import JobContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .retry import Permanent

M = TypeVar("M", bound=BaseModel)

Text = Field(min_length=1, max_length=256)
OneText = Annotated[str, Field(min_length=1)]
EMAIL = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
"""Enough of an address to be worth sending to (the SMTP server judges the rest)."""


class Turn(BaseModel):
    """One earlier message of the conversation, in the OpenAI chat format."""

    role: Literal["system", "user", "assistant", "developer"]
    content: str


class CompletionData(BaseModel):
    """``ai-tasks`` / ``generate-completion``: the guide's data, plus the earlier turns."""

    model_config = ConfigDict(extra="forbid", title="generate-completion")

    userId: str = Text
    conversationId: str = Text
    message: str = Field(min_length=1, max_length=200_000)
    """The user's new message."""
    model: str = Field(default="", max_length=256)
    """The chat model; empty: the worker's default (``--model``)."""
    maxTokens: int = Field(default=4096, ge=1, le=1_000_000)
    temperature: float = Field(default=0.7, ge=0, le=2)
    messages: list[Turn] = Field(default_factory=list, max_length=1_000)
    """Earlier turns, oldest first (used when no conversation store is configured)."""
    system: str = Field(default="", max_length=100_000)
    """A system prompt put before the history."""


class EmbeddingsData(BaseModel):
    """``ai-tasks`` / ``generate-embeddings``."""

    model_config = ConfigDict(extra="forbid", title="generate-embeddings")

    input: OneText | Annotated[list[OneText], Field(min_length=1, max_length=100_000)]
    """One text or several (each non-empty)."""
    model: str = Field(default="", max_length=256)
    """The embedding model; empty: the worker's default (``--embedding-model``)."""
    dimensions: int = Field(default=0, ge=0, le=65_536)
    """Fewer dimensions (models that support it); 0: the model's own."""


class Recipient(BaseModel):
    """Who an email goes to: ``to`` and the name the greeting uses."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(pattern=EMAIL, max_length=254)
    name: str = Field(min_length=1, max_length=200)
    userId: str = Field(default="", max_length=256)


class WelcomeData(Recipient):
    """``email`` / ``send-welcome``."""

    model_config = ConfigDict(title="send-welcome")


class VerificationData(Recipient):
    """``email`` / ``send-verification``: a link, or a token the built-in link is made from."""

    model_config = ConfigDict(
        title="send-verification",
        # The broker checks this too: one of the two is required.
        json_schema_extra={"anyOf": [{"required": ["link"]}, {"required": ["token"]}]},
    )

    link: str = Field(default="", min_length=1, max_length=4096)
    token: str = Field(default="", min_length=1, max_length=1024)

    @model_validator(mode="after")
    def _link_or_token(self) -> VerificationData:
        if not self.link and not self.token:
            raise ValueError("give a link or a token")
        return self


class ResetPasswordData(VerificationData):
    """``email`` / ``send-reset-password``."""

    model_config = ConfigDict(
        title="send-reset-password",
        json_schema_extra={"anyOf": [{"required": ["link"]}, {"required": ["token"]}]},
    )


class NotificationData(Recipient):
    """``email`` / ``send-notification``: a subject and a plain-text body of your own."""

    model_config = ConfigDict(title="send-notification")

    subject: str = Field(min_length=1, max_length=998)
    body: str = Field(min_length=1, max_length=100_000)


def parsed(model: type[M], ctx: JobContext) -> M:
    """The job's data as ``model``; data that does not fit fails the job for good (the broker
    refuses it at Add once the schema is registered; this catches jobs added before)."""
    try:
        return model.model_validate(ctx.data)
    except ValidationError as exc:
        first: Any = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Permanent(f"data{'.' + where if where else ''}: {first['msg']}") from None
