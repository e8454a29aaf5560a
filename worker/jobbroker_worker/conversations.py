"""An example ConversationStore (see ``ai.ConversationStore``): conversations kept in the
worker's memory, per user and conversation. Run with
``jobbroker-worker --conversation-store jobbroker_worker.conversations:MemoryConversations``.

Your application's store has the same two methods over its own database, for example::

    class SqlConversations:
        def __init__(self) -> None:
            self.pool = asyncpg.create_pool(os.environ["DATABASE_URL"])

        async def history(self, data):
            rows = await (await self.pool).fetch(
                "SELECT role, content FROM messages WHERE conversation_id = $1 "
                "AND user_id = $2 ORDER BY created_at",
                data.conversationId, data.userId)
            return [{"role": r["role"], "content": r["content"]} for r in rows]

        async def save(self, data, content):
            # idempotent: a job retried after a crash saves the same reply again
            await (await self.pool).execute(
                "INSERT INTO messages (id, conversation_id, user_id, role, content) "
                "VALUES ($1, $2, $3, 'ASSISTANT', $4) ON CONFLICT (id) DO NOTHING",
                f"{data.conversationId}:{data.message}", data.conversationId,
                data.userId, content)
"""

from __future__ import annotations

from .models import CompletionData


class MemoryConversations:
    """Every turn of every conversation, in memory (lost when the worker stops)."""

    def __init__(self) -> None:
        self.turns: dict[tuple[str, str], list[dict[str, str]]] = {}

    async def history(self, data: CompletionData) -> list[dict[str, str]]:
        return list(self.turns.get((data.userId, data.conversationId), []))

    async def save(self, data: CompletionData, content: str) -> None:
        turns = self.turns.setdefault((data.userId, data.conversationId), [])
        turns += [
            {"role": "user", "content": data.message},
            {"role": "assistant", "content": content},
        ]
