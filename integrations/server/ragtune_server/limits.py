"""Request limits: inputs per request, characters per input, bytes per body.

The model reads only its first ``max_seq_length`` tokens of a text, so a huge
input buys nothing but memory and tokenizer time; the limits bound what one
request can cost. The body-size limit is enforced while the body streams in,
before FastAPI parses it, so a client cannot make the server hold gigabytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune.errors import ConfigError
from ragtune_server.errors import APIError, error_response


@dataclass(frozen=True)
class Limits:
    """What one request may carry; a request over a limit is refused, never truncated."""

    max_inputs: int = 256
    max_input_chars: int = 32_000
    #: None: derived from the two above (6 bytes a character covers JSON's \\uXXXX escapes)
    max_body_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes={self.max_body_bytes}: must be at least 1024")

    @property
    def body_bytes(self) -> int:
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.max_inputs * self.max_input_chars * 6 + (1 << 20)


def check_texts(texts: Sequence[str], limits: Limits, param: str, indexed: bool = True) -> None:
    """Refuse too many texts (400) or a text that is too long (413), naming the field and index."""
    if len(texts) > limits.max_inputs:
        raise APIError(
            400,
            f"{param} has {len(texts)} items; at most {limits.max_inputs} per request: "
            "split it into several requests",
            param=param,
            code="too_many_inputs",
        )
    for i, text in enumerate(texts):
        if len(text) > limits.max_input_chars:
            where = f"{param}[{i}]" if indexed else param
            raise APIError(
                413,
                f"{where} has {len(text)} characters; at most {limits.max_input_chars} per input: "
                "split the text into chunks (the model reads only its first tokens anyway)",
                param=where,
                code="input_too_large",
            )


class BodyTooLarge(APIError):
    """413 for a body over the limit; an ``HTTPException``, so FastAPI passes it through."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            f"request body is larger than {limit} bytes: send fewer or shorter inputs per request",
            code="body_too_large",
        )


class BodySizeLimitMiddleware:
    """Refuse bodies over ``limit`` bytes, by ``Content-Length`` or while streaming (chunked)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                await error_response(
                    400, f"Content-Length {declared!r} is not a number", code="invalid_header"
                )(scope, receive, send)
                return
            if too_big:
                await BodyTooLarge(self.limit).response()(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message: Any = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)
