"""OpenAI-style error bodies for every 4xx/5xx the server sends.

OpenAI clients (the ``openai`` package, LangChain, LlamaIndex's OpenAI
embedding) parse ``{"error": {"message", "type", "param", "code"}}`` and turn
the status into a typed exception. FastAPI's own bodies (``{"detail": ...}``)
would reach users as opaque strings, so every path that can answer with an
error goes through :func:`error_response`: raised :class:`APIError`, request
validation, unknown routes, and the ASGI middlewares (host and origin, auth,
body) that answer before FastAPI runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ragtune.errors import RagtuneError
from ragtune_server.jsonresponse import FastJSONResponse

log = logging.getLogger("ragtune_server")

_TYPES = {429: "rate_limit_error"}


def error_type(status: int) -> str:
    """OpenAI's ``type`` for a status: ``server_error`` for 5xx, else ``invalid_request_error``."""
    return "server_error" if status >= 500 else _TYPES.get(status, "invalid_request_error")


def error_response(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """The one place an error body is built, so every error has the same shape."""
    body = {
        "error": {
            "message": message,
            "type": type or error_type(status),
            "param": param,
            "code": code,
        }
    }
    return FastJSONResponse(body, status_code=status, headers=dict(headers or {}))


class APIError(StarletteHTTPException):
    """An error a request caused, with the field at fault and the fix in ``message``.

    A subclass of Starlette's ``HTTPException`` on purpose: FastAPI re-raises
    those unchanged when they come out of reading the body, which lets the
    body-size limit raise one from inside ``receive``.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status_code=status, detail=message, headers=dict(headers or {}) or None)
        self.message = message
        self.param = param
        self.code = code
        self.type = type

    def response(self) -> Response:
        return error_response(
            self.status_code,
            self.message,
            param=self.param,
            code=self.code,
            type=self.type,
            headers=self.headers,
        )


def validation_message(exc: RequestValidationError) -> tuple[str, str | None, str]:
    """Turn pydantic's error list into (message, param, code) naming the field and the fix."""
    errors = list(exc.errors())
    parts: list[str] = []
    params: list[str] = []
    code = "invalid_value"
    for err in errors[:3]:
        loc = [p for p in err.get("loc", ()) if p != "body"]
        kind = err.get("type", "")
        msg = str(err.get("msg", "invalid value"))
        if msg.startswith(("Value error, ", "Assertion failed, ")):
            msg = msg.split(", ", 1)[1]
        if kind == "json_invalid":
            ctx = err.get("ctx") or {}
            where = f" at position {loc[0]}" if loc and isinstance(loc[0], int) else ""
            detail = f" ({ctx['error']})" if ctx.get("error") else ""
            return (f"malformed JSON body{where}{detail}: send a JSON object", None, "invalid_json")
        param = _dotted(loc)
        if not param:
            if kind == "missing":
                return ("the request body is empty: send a JSON object", None, "invalid_json")
            return (f"the request body must be a JSON object ({msg})", None, "invalid_json")
        if kind == "missing":
            parts.append(f"missing required field '{param}'")
            code = "missing_field"
        else:
            parts.append(f"{param}: {msg}")
        params.append(param)
    if len(errors) > 3:
        parts.append(f"and {len(errors) - 3} more")
    return "; ".join(parts), (params[0] if params else None), code


def _dotted(loc: list[Any]) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def install_error_handlers(app: FastAPI) -> None:
    """Route every error FastAPI can raise to an OpenAI-style body."""

    async def on_api_error(request: Request, exc: APIError) -> Response:
        return exc.response()

    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            message = (
                f"unknown route {request.method} {request.url.path}: this server answers "
                "POST /v1/embeddings, POST /v1/search, GET /v1/models, GET /health, "
                "GET /v1/status, POST /v1/reload, POST /v1/release"
            )
            return error_response(404, message, code="unknown_url")
        if exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
            hint = f"; use {allowed}" if allowed else ""
            return error_response(
                405,
                f"{request.method} is not allowed on {request.url.path}{hint}",
                code="method_not_allowed",
                headers=exc.headers,
            )
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def on_validation_error(request: Request, exc: RequestValidationError) -> Response:
        message, param, code = validation_message(exc)
        return error_response(400, message, param=param, code=code)

    async def on_ragtune_error(request: Request, exc: RagtuneError) -> Response:
        return error_response(400, str(exc), code="invalid_value")

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "internal server error (logged on the server)", code="internal_error"
        )

    app.add_exception_handler(APIError, on_api_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, on_http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, on_validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(RagtuneError, on_ragtune_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, on_unexpected)
