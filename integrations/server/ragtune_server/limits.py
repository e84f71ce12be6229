"""Request limits: inputs per request, characters per input, bytes and JSON values per body, time.

The model reads only its first ``max_seq_length`` tokens of a text, so a huge
input buys nothing but memory and tokenizer time; the limits bound what one
request can cost. Each route has its own body limit, sized from what it really
takes (every input at its longest for /v1/embeddings, one query and a filter
for /v1/search, nothing for the rest). :class:`BodyLimitMiddleware` reads a
body in full, within that limit, before FastAPI sees it, and lets the parser
run only on JSON that holds just the route's fields and a bounded number of
values (:func:`check_json`): a parser turns ``[],`` (3 bytes) into a list
object of 64, so a body's size alone does not bound what parsing it costs.
The timeouts bound how long a slow or silent client holds a connection
(:mod:`ragtune_server.protocol` closes connections whose headers do not arrive).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ragtune.errors import ConfigError
from ragtune_server.errors import APIError

#: bytes a character may take in the body: UTF-8's longest (JSON escapes of control characters,
#: 6 bytes, are rare; ASCII-escaped non-ASCII text at the full limit is refused, with the fix)
BYTES_PER_CHAR = 4
#: the rest of a JSON body (field names, quotes, commas, ``user`` and the other small fields)
BODY_ALLOWANCE = 1 << 20
#: a search body beyond its query: the filter (a thousand 40-character ids is 44 KB)
QUERY_ALLOWANCE = 64 << 10
#: JSON values a body may hold beyond its inputs (field names, the small fields, a filter's keys)
FIELD_VALUES = 64
#: values a search filter may list (any of them matches)
FILTER_VALUES = 1000
#: the body of every other route (admin POSTs, GETs): none of them reads one; ``{}`` fits
SMALL_BODY = 1024


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

    @property
    def query_body_bytes(self) -> int:
        """The body limit of a search: one query at its longest plus 64 KiB for the filter
        (192 KB at the defaults; :attr:`max_body_bytes` caps it too)."""
        return min(self.body_bytes, self.max_input_chars * BYTES_PER_CHAR + QUERY_ALLOWANCE)


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
    """413 for a body over its route's limit."""

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


class UnsupportedMediaType(APIError):
    """415 for a body that is not declared JSON (a browser's cross-site ``text/plain`` POST)."""

    def __init__(self, ctype: str | None) -> None:
        said = f"Content-Type {ctype!r}" if ctype else "no Content-Type"
        super().__init__(
            415,
            f"a request body with {said}: send JSON, with 'Content-Type: application/json'",
            code="unsupported_media_type",
        )


@dataclass(frozen=True)
class BodyRule:
    """What one route's body may be, checked before it is parsed.

    Args:
        max_bytes: its size.
        fields: the top-level fields it may hold (its request model's).
        max_values: JSON values (strings, numbers, literals, arrays, objects, keys included)
            it may hold: with the size, this bounds what parsing it builds.
        hint: what the route takes, for the message when there are more values.
    """

    max_bytes: int
    fields: frozenset[str] = frozenset()
    max_values: int = FIELD_VALUES
    hint: str = "no body"


#: possessive quantifiers (Python 3.11+) never give back what they matched: a 30 MB unterminated
#: string or run of spaces fails in one pass (0.2 s), where backtracking takes 1.4 s
_P = b"+" if sys.version_info >= (3, 11) else b""
#: one JSON token after optional whitespace: a string (1), an opener (2), a closer (3), a colon (4),
#: a comma (5), or a number or literal (at most 40 characters a token: longer ones count as several)
_TOKEN = re.compile(
    rb'[ \t\r\n]*%s(?:("[^"\\]*%s(?:\\.[^"\\]*%s)*%s")|([\[{])|([\]}])|(:)|(,)|[-+.\w]{1,40})'
    % (_P, _P, _P, _P),
    re.DOTALL,
)
#: a field name longer than this is no field of any route, and is not decoded
_MAX_KEY = 64


def check_json(body: bytes | bytearray, rule: BodyRule, route: str) -> None:
    """Refuse a body whose top-level object has a field ``rule`` does not name (400), or that
    holds more than ``rule.max_values`` JSON values (413), before anything parses it.

    One pass of a tokenizer (a regular expression; strings are skipped in C, escapes
    included) that stops at the first offence, so an unknown field's value and the
    values past the limit are never even scanned. It checks structure only: malformed
    JSON is left to the parser, which says where (a scan that stops on it has checked
    everything before it, all that the parser can build before it fails).

    Raises:
        APIError: 400 ``unknown_field`` or 413 ``too_many_values``, naming the field.
    """
    depth = values = 0
    in_object = False
    field: str | None = None  # the top-level field being read
    key: bytes | None = None  # a string at the top level: a field name when a colon follows
    pos = 0
    match = _TOKEN.match
    while (token := match(body, pos)) is not None and token.end() > pos:
        pos = token.end()
        string, opener, closer, colon, comma = token.group(1, 2, 3, 4, 5)
        if colon is not None:
            if key is not None and depth == 1 and in_object:
                field = _field(key, rule, route)
            key = None
            continue
        key = string if depth == 1 else None
        if closer is not None:
            depth -= 1
            continue
        if comma is not None:
            continue
        values += 1
        if values > rule.max_values:
            where = f" (in {field!r})" if field else ""
            raise APIError(
                413,
                f"the body holds more than {rule.max_values} JSON values{where}: "
                f"{route} takes {rule.hint}",
                param=field,
                code="too_many_values",
            )
        if opener is not None:
            if depth == 0:
                in_object = opener == b"{"
            depth += 1


def _field(key: bytes, rule: BodyRule, route: str) -> str:
    """The field name ``key`` (a JSON string token) when ``rule`` names it; else a 400."""
    name: str | None = None
    if len(key) <= _MAX_KEY + 2:
        try:
            name = json.loads(key)
        except ValueError:
            name = None
    if name in rule.fields:
        assert name is not None
        return name
    shown = repr(name) if name is not None else key[:_MAX_KEY + 2].decode("utf-8", "replace") + "…"
    accepted = f"accepts only {', '.join(sorted(rule.fields))}" if rule.fields else "takes no fields"
    raise APIError(
        400,
        f"unknown field {shown}: {route} {accepted}; leave it out",
        param=name,
        code="unknown_field",
    )


def _is_json(ctype: str) -> bool:
    media = ctype.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BodyLimitMiddleware:
    """Read each request's body in full, within its route's :class:`BodyRule`, before the app.

    Refused, with the OpenAI error body: a body that is not declared JSON (415; a POST
    that declares another type too, body or not: browsers send ``text/plain`` across
    sites without asking), over the route's size by ``Content-Length`` (nothing read)
    or while it streams (413), slower than ``timeout`` seconds (408), or with unknown
    fields or too many values (:func:`check_json`). The app then reads the checked body.

    Hand-written rather than FastAPI's ``max_body_size``: that one answers with a
    plain-text "Content Too Large" (in place of any response, a 401 included, once a
    declared length is over the limit), not the OpenAI error body clients parse.
    """

    def __init__(
        self,
        app: ASGIApp,
        rules: Mapping[str, BodyRule],
        default: BodyRule,
        timeout: float | None = None,
    ) -> None:
        self.app = app
        self.rules = dict(rules)
        self.default = default
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rule = self.rules.get(scope["path"], self.default)
        route = f"{scope['method']} {scope['path']}"
        try:
            buf = await self._read(scope, receive, rule)
            check_json(buf, rule, route)
        except APIError as exc:
            await exc.response()(scope, receive, send)
            return
        pending: bytes | None = bytes(buf)
        del buf

        async def replay() -> Message:
            nonlocal pending
            if pending is None:  # after the body: http.disconnect
                return await receive()
            message: Message = {"type": "http.request", "body": pending, "more_body": False}
            pending = None
            return message

        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive, rule: BodyRule) -> bytearray:
        headers = Headers(scope=scope)
        ctype = headers.get("content-type")
        if ctype is not None and not _is_json(ctype) and scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            raise UnsupportedMediaType(ctype)
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > rule.max_bytes
            except ValueError:
                raise APIError(
                    400, f"Content-Length {declared!r} is not a number", code="invalid_header"
                ) from None
            if too_big:
                raise BodyTooLarge(rule.max_bytes)
        buf = bytearray()
        loop = asyncio.get_running_loop()
        deadline = None if self.timeout is None else loop.time() + self.timeout
        more = True
        while more:
            try:
                message: Message = await asyncio.wait_for(
                    receive(), None if deadline is None else max(0.0, deadline - loop.time())
                )
            except asyncio.TimeoutError:
                raise BodyTimeout(self.timeout or 0) from None
            if message["type"] != "http.request":  # the client went away
                raise APIError(400, "the client disconnected before its body arrived", code="disconnected")
            buf += message.get("body", b"")
            if len(buf) > rule.max_bytes:
                raise BodyTooLarge(rule.max_bytes)
            more = message.get("more_body", False)
        if buf and ctype is None:
            raise UnsupportedMediaType(None)
        return buf
