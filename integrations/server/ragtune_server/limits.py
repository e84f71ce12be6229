"""Request limits: inputs per request, characters per input, bytes per body, and time.

The model reads only its first ``max_seq_length`` tokens of a text, so a huge
input buys nothing but memory and tokenizer time; the limits bound what one
request can cost. The body-size limit is enforced while the body streams in,
before FastAPI parses it, so a client cannot make the server hold gigabytes;
the timeouts bound how long a slow or silent client holds a connection
(:mod:`ragtune_server.protocol` closes connections whose headers do not arrive).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune.errors import ConfigError
from ragtune_server.errors import APIError, error_response

#: bytes a character may take in the body: UTF-8's longest (JSON escapes of control characters,
#: 6 bytes, are rare; ASCII-escaped non-ASCII text at the full limit is refused, with the fix)
BYTES_PER_CHAR = 4
#: the rest of a JSON body (field names, quotes, commas, ``user`` and the other small fields)
BODY_ALLOWANCE = 1 << 20


@dataclass(frozen=True)
class Limits:
    """What a request may carry and how long it may take; over a limit: refused, never truncated."""

    max_inputs: int = 256
    max_input_chars: int = 32_000
    #: None: derived from the two above (:attr:`body_bytes`)
    max_body_bytes: int | None = None
    #: seconds a connection may take to send a request's headers (after opening or a response)
    header_timeout_s: float = 10.0
    #: seconds a request's body may take to arrive in full
    body_timeout_s: float = 60.0
    #: seconds an idle keep-alive connection stays open (uvicorn's ``timeout_keep_alive``)
    keep_alive_s: float = 5.0

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_input_chars"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)}: must be at least 1")
        if self.max_body_bytes is not None and self.max_body_bytes < 1024:
            raise ConfigError(f"max_body_bytes={self.max_body_bytes}: must be at least 1024")
        for name in ("header_timeout_s", "body_timeout_s", "keep_alive_s"):
            if not 0 < getattr(self, name) <= 3600:
                raise ConfigError(f"{name}={getattr(self, name)}: must be in (0, 3600] seconds")

    @property
    def body_bytes(self) -> int:
        """The body limit: every input at its longest in UTF-8, plus 1 MiB for the rest of the JSON
        (33.8 MB at the defaults)."""
        if self.max_body_bytes is not None:
            return self.max_body_bytes
        return self.max_inputs * self.max_input_chars * BYTES_PER_CHAR + BODY_ALLOWANCE


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


class BodyTimeout(APIError):
    """408 for a body that did not arrive in time."""

    def __init__(self, timeout: float) -> None:
        super().__init__(
            408,
            f"the request body did not arrive within {timeout:g} s; send it at once",
            code="request_timeout",
            headers={"Connection": "close"},  # the rest of a slow body is not worth waiting for
        )


class BodySizeLimitMiddleware:
    """Refuse bodies over ``limit`` bytes, by ``Content-Length`` or while streaming (chunked),
    and bodies that take longer than ``timeout`` seconds to arrive.

    Hand-written rather than FastAPI's ``max_body_size``: that one answers with a
    plain-text "Content Too Large" (in place of any response, a 401 included, once a
    declared length is over the limit), not the OpenAI error body clients parse.
    """

    def __init__(self, app: ASGIApp, limit: int, timeout: float | None = None) -> None:
        self.app = app
        self.limit = limit
        self.timeout = timeout

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
        complete = False
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout

        async def limited() -> Message:
            nonlocal received, complete
            if complete:  # after the body: http.disconnect, not timed
                return await receive()
            try:
                message: Any = await asyncio.wait_for(
                    receive(), None if deadline is None else max(0.0, deadline - loop.time())
                )
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout or 0) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)
