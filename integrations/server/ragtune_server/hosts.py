"""Which ``Host`` and ``Origin`` a request may carry: no DNS rebinding, no cross-site requests.

A browser lets any web page send requests to ``127.0.0.1``; two checks keep
such pages away from a server that is only meant for local or named clients:

- ``Host`` must name this server (DNS rebinding: ``evil.example`` resolving to
  127.0.0.1 makes the page same-origin with the server, but its requests still
  say ``Host: evil.example``). Allowed: the bound address, ``localhost``,
  ``127.0.0.1`` and ``[::1]``, at the bound port, plus ``--allow-host`` names
  (a reverse proxy's public name, a port mapping). A server bound to every
  address (``0.0.0.0``) also answers to any IP address: rebinding needs a name.
- ``Origin``, which browsers send with every cross-site and every POST request
  (clients such as ``curl`` or the ``openai`` package send none), must be the
  server's own (its allowed hosts) or one given with ``--allow-origin``; those
  get CORS headers (Starlette's ``CORSMiddleware``), every other one a 403.

Hand-written rather than Starlette's ``TrustedHostMiddleware``: that one answers
with a plain-text "Invalid host header" that names neither the host nor the
option that allows it, not the OpenAI error body clients parse, and checks no
``Origin``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from ragtune.errors import ConfigError
from ragtune_server.errors import error_response

#: the names a loopback-bound server answers to, whatever address it was given
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
#: bind addresses that mean "every interface"
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _authority(text: str) -> tuple[str, int | None]:
    """``name``, ``name:port`` or ``[v6]:port`` → (lower-case name without brackets, port or None).
    Raises ValueError for anything else (a path, user info, a bad port)."""
    parts = urlsplit(f"//{text.strip()}")
    if not parts.hostname or parts.path or parts.query or parts.username is not None:
        raise ValueError(text)
    return parts.hostname.lower(), parts.port


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _show(name: str, port: int | None) -> str:
    host = f"[{name}]" if ":" in name else name
    return host if port is None else f"{host}:{port}"


@dataclass(frozen=True)
class HostPolicy:
    """The hosts (name, port or None for any) a request's ``Host`` may name, the extra origins
    allowed to call, and whether any IP address is a valid host (a wildcard bind)."""

    hosts: frozenset[tuple[str, int | None]]
    origins: frozenset[str] = frozenset()
    any_ip: bool = False

    @classmethod
    def for_bind(
        cls,
        host: str = "127.0.0.1",
        port: int | None = None,
        allow_hosts: Iterable[str] = (),
        allow_origins: Iterable[str] = (),
    ) -> HostPolicy:
        """The policy of a server bound to ``host``:``port`` (``port`` None: any port, for an app
        built before its port is known), with ``--allow-host`` and ``--allow-origin`` values.

        Raises:
            ConfigError: an allowed host or origin that is not one (naming it and the form to use).
        """
        bound = host.strip("[]").lower()
        port = port or None  # 0: the OS picks it, after the app is built
        names = {(name, port) for name in LOOPBACK_NAMES}
        if bound not in WILDCARDS:
            names.add((bound, port))
        for text in allow_hosts:
            try:
                names.add(_authority(text))
            except ValueError:
                raise ConfigError(
                    f"--allow-host {text!r}: not a host; give a name or address, optionally with "
                    "a port (api.example.com, 10.0.0.5:8000, [fd00::1]:8000)"
                ) from None
        origins = set()
        for text in allow_origins:
            origin = _origin(text)
            if origin is None:
                raise ConfigError(
                    f"--allow-origin {text!r}: not an origin; give a scheme and a host, "
                    "optionally a port, and no path (http://localhost:3000)"
                )
            origins.add(origin)
        return cls(frozenset(names), frozenset(origins), any_ip=bound in WILDCARDS)

    def host_ok(self, name: str, port: int | None) -> bool:
        return (
            (name, port) in self.hosts or (name, None) in self.hosts or (self.any_ip and _is_ip(name))
        )

    def origin_ok(self, origin: str) -> bool:
        """True for an origin given with ``--allow-origin`` or for the server's own (an allowed host)."""
        normal = _origin(origin)
        if normal is None:  # "null" (a sandboxed frame, a file:// page) or garbage
            return False
        if normal in self.origins:
            return True
        parts = urlsplit(normal)
        assert parts.hostname is not None
        return self.host_ok(parts.hostname, parts.port or _DEFAULT_PORTS[parts.scheme])

    def allowed(self) -> str:
        """The allowed hosts, for messages."""
        shown = sorted(_show(name, port) for name, port in self.hosts)
        return ", ".join(shown + (["any IP address"] if self.any_ip else []))


def _origin(text: str) -> str | None:
    """``scheme://host[:port]`` in the form browsers send it (lower case, no default port), or
    None when ``text`` is not an http(s) origin."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    port = None if port == _DEFAULT_PORTS[parts.scheme] else port
    return f"{parts.scheme}://{_show(parts.hostname.lower(), port)}"


class HostOriginMiddleware:
    """400 for a ``Host`` the policy does not name, 403 for a foreign ``Origin``; the outermost
    layer, so nothing (the key check, the body) runs for such a request."""

    def __init__(self, app: ASGIApp, policy: HostPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        try:
            name, port = _authority(host or "")
        except ValueError:
            name, port = "", None
        if not name or not self.policy.host_ok(name, port or _DEFAULT_PORTS["http"]):
            shown = repr(host) if host else "(none)"
            response = error_response(
                400,
                f"Host {shown} is not a name this server answers to ({self.policy.allowed()}): "
                "a page whose domain resolves to this address (DNS rebinding) is refused; "
                "to serve under another name or port, start the server with --allow-host NAME[:PORT]",
                code="host_not_allowed",
            )
            await response(scope, receive, send)
            return
        origin = headers.get("origin")
        if origin is not None and not self.policy.origin_ok(origin):
            response = error_response(
                403,
                f"Origin {origin!r} may not call this server (cross-site requests are refused): "
                "to let a web app on that origin call it, start the server with "
                f"--allow-origin {origin}",
                code="origin_not_allowed",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
