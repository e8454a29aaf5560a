"""ServerTiming: each answer says how long the dashboard took to start it
(``Server-Timing: app;dur=<ms>``), as browsers' developer tools and bench/dashboard_speed.py
read it. For a stream, that is the time to its first byte."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class ServerTiming:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed(message: Message) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - started) * 1000
                header = (b"server-timing", f"app;dur={took:.1f}".encode())
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        await self.app(scope, receive, timed)
