"""uvicorn's h11 HTTP protocol with a deadline for request headers.

uvicorn (0.55) has no such timeout: its keep-alive timer starts only after a
response and stops at the first byte received, so a connection that sends
nothing, or half a request line, is held forever (a few thousand of them
exhaust the server: slowloris). uvicorn's protocol classes are the one place a
connection's bytes are seen before a request exists (ASGI middleware runs only
once the headers are complete), hence this subclass. It uses h11's connection
states, so it extends the h11 protocol only; the server runs on it whichever
HTTP library is installed (the model, not HTTP parsing, bounds throughput).

The body's own deadline is ASGI middleware (:class:`ragtune_server.limits.BodyLimitMiddleware`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ragtune_server.errors import error_response

log = logging.getLogger("ragtune_server")


class HeaderTimeoutProtocol(H11Protocol):
    """Close a connection whose request headers are not complete ``header_timeout`` seconds
    after it opened or after its last response (408 when part of a request came)."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (or headers over h11's limit), as JSON."""
        self._send_raw(400, f"malformed HTTP request ({msg.rstrip('.')})", "invalid_http")

    def _arm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = self.loop.call_later(self.header_timeout, self._expired)

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        if self.conn.our_state in (h11.SEND_RESPONSE, h11.SEND_BODY):
            return  # a request is being answered; the next deadline starts with its response
        # waiting for headers (IDLE), or answered while the client still sends a refused body (DONE)
        if self.conn.our_state is h11.IDLE and self.conn.trailing_data[0]:
            self._send_raw(
                408,
                f"the request headers did not arrive within {self.header_timeout:g} s",
                "request_timeout",
            )
        else:
            self.transport.close()

    def _send_raw(self, status: int, message: str, code: str) -> None:
        # h11 cannot send a response before it has parsed a request, so the bytes are written
        # directly, then the connection closes
        response = error_response(status, message, code=code)
        head = [
            f"HTTP/1.1 {status} {'Request Timeout' if status == 408 else 'Bad Request'}",
            "content-type: application/json",
            f"content-length: {len(response.body)}",
            "connection: close",
        ]
        self.transport.write(("\r\n".join(head) + "\r\n\r\n").encode() + bytes(response.body))
        self.transport.close()


def protocol_class(header_timeout: float) -> type[HeaderTimeoutProtocol]:
    """The protocol class for uvicorn's ``Config(http=...)`` with this header deadline."""
    return type(
        "HeaderTimeoutProtocol", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout}
    )
