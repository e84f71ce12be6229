"""Bearer API-key check, as OpenAI clients send it (``Authorization: Bearer KEY``).

A pure ASGI middleware rather than a FastAPI dependency: FastAPI parses the
body before it runs dependencies, so a dependency would answer an
unauthenticated, malformed request with 400 instead of 401 and would parse
bodies for callers who may not use the server at all. Every path is protected
except an allow-list (health check, API docs), so a new route cannot be
exposed by forgetting a decorator.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ragtune.errors import ConfigError
from ragtune_server.errors import error_response

OPEN_PATHS = frozenset({"/health", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})

_HINT = (
    "send 'Authorization: Bearer KEY' with the key the server was started with "
    "(--api-key / RAGTUNE_API_KEY)"
)


def check_api_key(api_key: str | None) -> None:
    """Refuse a key that would lock nobody out: an empty or blank one (``--api-key ""``).

    Raises:
        ConfigError: naming the option and the fix.
    """
    if api_key is not None and not api_key.strip():
        raise ConfigError(
            "the API key is empty (--api-key or RAGTUNE_API_KEY): give a non-empty key, "
            "or leave the option out to serve loopback without one"
        )


class BearerAuthMiddleware:
    """401 with an OpenAI-style body unless the request carries the configured key.

    The key is compared as UTF-8 bytes with the header's bytes as sent (Starlette
    decodes headers as Latin-1, so re-encoding with Latin-1 restores them), in
    constant time: a non-ASCII key matches when the client sends it UTF-8 encoded.
    """

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        check_api_key(api_key)
        self.app = app
        self._key = api_key.encode("utf-8")
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        if not header:
            message, code = f"no API key: {_HINT}", "missing_api_key"
        else:
            scheme, _, token = header.encode("latin-1").strip().partition(b" ")
            if scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self._key):
                await self.app(scope, receive, send)
                return
            message, code = f"incorrect API key: {_HINT}", "invalid_api_key"
        response = error_response(401, message, code=code, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)
