"""What keeps the dashboard safe in a browser: headers, the token cookie and CSRF tokens.

- Every answer carries a strict Content-Security-Policy: scripts, styles and connections from
  the dashboard's own origin only, no inline script or style, no frames, forms posting to
  itself only. What a job holds (names, data, logs, results, errors) is escaped by Jinja's
  autoescaping, and even a payload that slipped through could not run a script.
- The broker token lives in an HttpOnly, SameSite=Strict cookie: never in a URL, a page, a
  log, nor reachable from a script.
- Every POST carries a CSRF token: an HMAC of a random value kept in another HttpOnly,
  SameSite=Strict cookie, checked in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

TOKEN_COOKIE = "jobbroker_token"
CSRF_COOKIE = "jobbroker_csrf"
CSRF_FIELD = "csrf"

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`HEADERS` to every answer (streams included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in HEADERS if n not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


class Csrf:
    """CSRF tokens bound to a per-browser random cookie."""

    def __init__(self, key: bytes, secure: bool | None) -> None:
        self.key = key or secrets.token_bytes(32)
        self.secure = secure

    def _sign(self, nonce: str) -> str:
        return hmac.new(self.key, nonce.encode(), hashlib.sha256).hexdigest()

    def nonce(self, request: Request) -> str:
        """This browser's nonce: the cookie's, else a new one (set by :meth:`set_cookie`)."""
        nonce = request.cookies.get(CSRF_COOKIE, "")
        if len(nonce) != 43:  # token_urlsafe(32)
            nonce = getattr(request.state, "csrf_nonce", None) or secrets.token_urlsafe(32)
        request.state.csrf_nonce = nonce
        return nonce

    def token(self, request: Request) -> str:
        """The value forms must send back in their ``csrf`` field."""
        return self._sign(self.nonce(request))

    def valid(self, request: Request, sent: str) -> bool:
        nonce = request.cookies.get(CSRF_COOKIE, "")
        return bool(nonce) and hmac.compare_digest(self._sign(nonce), sent or "")

    def set_cookie(self, request: Request, response: Response) -> None:
        """Give the browser its nonce cookie if the page just rendered made one."""
        nonce = getattr(request.state, "csrf_nonce", None)
        if nonce and request.cookies.get(CSRF_COOKIE) != nonce:
            set_cookie(request, response, CSRF_COOKIE, nonce, self.secure)


def secure_request(request: Request, secure: bool | None) -> bool:
    return request.url.scheme == "https" if secure is None else secure


def set_cookie(
    request: Request, response: Response, name: str, value: str, secure: bool | None
) -> None:
    response.set_cookie(
        name,
        value,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=secure_request(request, secure),
    )


def delete_cookie(request: Request, response: Response, name: str, secure: bool | None) -> None:
    response.delete_cookie(
        name,
        path=request.scope.get("root_path") or "/",
        httponly=True,
        samesite="strict",
        secure=secure_request(request, secure),
    )
