"""Keeps the broker's tokens in step with the token file: re-read when the file changes (checked
every second) or on SIGHUP. A token removed from the file stops working at once and its open
streams end with UNAUTHENTICATED; a token whose grants changed has its streams ended with
UNAVAILABLE, so its clients reconnect under the new grants. A file that no longer reads keeps
the tokens in force, and the error is logged."""

from __future__ import annotations

import asyncio
import logging
import os

from ..errors import TokenChanged, TokenRevoked
from ..loops import Loop
from .gate import Gate
from .streams import OpenStreams
from .tokens import TokenFileError, load

log = logging.getLogger(__name__)

POLL_S = 1.0


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class TokenWatch(Loop):
    name = "token-watch"

    def __init__(self, path: str, gate: Gate, streams: OpenStreams) -> None:
        super().__init__()
        self.path = path
        self.gate = gate
        self.streams = streams
        self._stamp = _stamp(path)

    def reload(self) -> bool:
        """Read the file now; returns whether the tokens in force changed."""
        self._stamp = _stamp(self.path)
        try:
            book = load(self.path)
        except TokenFileError as exc:
            log.error("token file not reloaded, the tokens in force stay: %s", exc)
            return False
        old = self.gate.book.entries if self.gate.book is not None else {}
        self.gate.book = book
        removed = {i for i in old if i not in book.entries}
        changed = {i for i, e in old.items() if i in book.entries and book.entries[i] != e}
        if removed:
            ended = self.streams.end(removed.__contains__, TokenRevoked("the token was revoked"))
            log.info("tokens revoked: %s (%d streams ended)", ", ".join(sorted(removed)), ended)
        if changed:
            self.streams.end(
                changed.__contains__,
                TokenChanged("the token's grants changed; reconnect"),
            )
        if removed or changed or len(book.entries) != len(old):
            log.info("token file reloaded: %d tokens", len(book.entries))
            return True
        return False

    async def _run(self) -> None:
        while not self._stopping:
            if _stamp(self.path) != self._stamp:
                self.reload()
            self._wake.clear()
            try:
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
