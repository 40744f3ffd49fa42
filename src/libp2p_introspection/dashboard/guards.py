"""The dashboard's ASGI guards: who may ask, and what every answer carries.

The page shows what the introspection endpoint shows (see SECURITY.md), so
the dashboard guards it the same way (:class:`LocalOnly`): a request whose
``Host`` is not a loopback name or the bound address (DNS rebinding), or
whose ``Origin`` is another site (a page you visit opening
``ws://127.0.0.1:8846/feed``), is refused with 403. Commands (every ``POST``)
are taken from the dashboard's own page only: a browser request from any
other origin, loopback ones included (``Origin`` not the dashboard's, or
``Sec-Fetch-Site`` other than ``same-origin``), is refused with 403. Tools
that send no ``Origin`` are allowed.

Every HTTP answer carries :data:`SECURITY_HEADERS` and a
``Content-Security-Policy`` (:func:`content_security_policy`, added by
:class:`SecurityHeaders`): the page runs its own scripts only, loads nothing
from elsewhere and talks to its own address only, so even text that slipped
into the page as markup could not run script or send what it read away. (The
page never treats what servers and files send as markup in the first place:
see ``static/js/dom.js``.)

A client that leaves while its request body is read ends its request quietly
(:class:`QuietDisconnects`), not with a traceback in the log.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import ClientDisconnect
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from libp2p_introspection.dashboard.errors import DashboardError
from libp2p_introspection.protocol.admission import is_loopback, origin_allowed
from libp2p_introspection.protocol.closecodes import CLOSE_POLICY_VIOLATION

log = logging.getLogger(__name__)


class BadQuery(DashboardError):
    """A ``GET`` route's query string is not what it takes: its text says why (answered 400)."""


def bounded_int(params: Mapping[str, str], name: str, low: int, high: int,
                default: int | None = None) -> int:  # fmt: skip
    """The decimal integer ``params[name]``, ``low <= it <= high`` (``default`` when absent).

    Raises :class:`BadQuery` naming the parameter and its bounds otherwise (a
    huge or malformed value is never parsed further than its first 20 characters)."""
    raw = params.get(name)
    if raw is None or raw == "":
        if default is None:
            raise BadQuery(f"{name} is required")
        return default
    if len(raw) > 20 or not raw.isascii() or not raw.isdigit():
        raise BadQuery(f"{name} must be an integer from {low} to {high}")
    value = int(raw)
    if not low <= value <= high:
        raise BadQuery(f"{name} must be an integer from {low} to {high}")
    return value


def bounded_text(params: Mapping[str, str], name: str, most: int) -> str:
    """``params[name]`` (``""`` when absent), at most ``most`` characters.

    Raises :class:`BadQuery` when longer."""
    raw = params.get(name, "")
    if len(raw) > most:
        raise BadQuery(f"{name} is longer than {most} characters")
    return raw


#: The longest query a page may send on its feed (``feed_query``), characters.
MAX_FEED_QUERY = 8 * 1024


def feed_query(text: str, names: frozenset[str]) -> dict[str, str]:
    """The parameters of a query a page sent on its feed (``page=1&sort=age``: a URL
    query string, percent-encoded), each of ``names`` at most once.

    Raises :class:`BadQuery` for a text over :data:`MAX_FEED_QUERY` characters, a
    parameter not in ``names``, one given twice, or one that is not percent-encoded
    UTF-8 (its value is then checked by whoever reads it, as a ``GET``'s query)."""
    if len(text) > MAX_FEED_QUERY:
        raise BadQuery(f"a feed query is at most {MAX_FEED_QUERY} characters")
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          errors="strict", max_num_fields=len(names))  # fmt: skip
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadQuery(f"not a query string: {exc}".splitlines()[0][:200]) from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name not in names:
            raise BadQuery(f"no parameter {name[:40]!r} here")
        if name in params:
            raise BadQuery(f"{name} is given twice")
        params[name] = value
    return params


#: Headers on every HTTP answer: no MIME sniffing (JSON and text stay data), no
#: framing, no referrer, and no reading of any answer from another origin's page.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
#: A ``Host`` header that may be named in the policy as it is (the guard checked it already).
_PLAIN_HOST = re.compile(r"[A-Za-z0-9.\-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def content_security_policy(host_header: str | None) -> str:
    """The page's Content-Security-Policy: its own scripts, styles and data only.

    No inline script or ``eval`` (``script-src 'self'``), no inline style
    markup (Tabulator and uPlot set styles through the DOM, which CSP
    allows), images from the page or ``data:`` only (its empty favicon), and
    ``connect-src`` its own origin plus, spelled out for browsers whose
    ``'self'`` does not cover WebSockets, ``ws://HOST`` for its ``/feed``.
    ``host_header``: the request's ``Host`` (omitted from the policy unless
    it is a plain ``name[:port]`` or ``[v6][:port]``).
    """
    connect = "'self'"
    if host_header and _PLAIN_HOST.fullmatch(host_header):
        connect += f" ws://{host_header} wss://{host_header}"
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    )


class SecurityHeaders:
    """ASGI middleware: :data:`SECURITY_HEADERS` and the CSP on every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*SECURITY_HEADERS, (b"content-security-policy",
                 content_security_policy(_header(scope, b"host")).encode("latin-1"))]  # fmt: skip
        names = {name for name, _ in extra}

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in names]
                message = {**message, "headers": headers + extra}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class QuietDisconnects:
    """ASGI middleware: a client that leaves while its request body is read is no error.

    Starlette raises ``ClientDisconnect`` out of the route (hypercorn then
    logs "Error in ASGI Framework" with a traceback, for every such client);
    here it is logged at debug level and the request simply ends.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except ClientDisconnect:
            log.debug("a client left during its request to %s", scope.get("path"))


class LocalOnly:
    """ASGI guard: refuse foreign ``Host`` and ``Origin`` headers with 403 (module doc).

    Reads (``GET``, the feed) are allowed from loopback origins, as the
    introspection endpoint allows them; commands (any other method) only
    from the dashboard's own origin.

    ``bind_host``: the address the dashboard listens on; a wildcard
    (``0.0.0.0``, ``::``) accepts any ``Host``.
    """

    def __init__(self, app: ASGIApp, bind_host: str) -> None:
        self.app = app
        host = bind_host.strip("[]").lower()
        self.any_host = host in ("", "0.0.0.0", "::")
        self.bind_host = host

    def host_ok(self, host_header: str | None) -> bool:
        if self.any_host or host_header is None:
            return True
        hostname = urlsplit(f"//{host_header}").hostname or ""
        return hostname == self.bind_host or hostname == "localhost" or is_loopback(hostname)

    def origin_ok(self, origin: str | None, host_header: str | None) -> bool:
        if origin is None or origin_allowed(origin):
            return True
        return self.same_origin(origin, host_header)

    @staticmethod
    def same_origin(origin: str, host_header: str | None) -> bool:
        """Whether ``origin`` is the dashboard's own (the address the browser asked)."""
        return host_header is not None and origin.rstrip("/").lower() in (
            f"http://{host_header}".lower(),
            f"https://{host_header}".lower(),
        )

    def command_ok(self, scope: Scope, origin: str | None, host_header: str | None) -> bool:
        """A command (not ``GET``/``HEAD``) from a browser must come from the dashboard's page."""
        if scope["type"] != "http" or scope.get("method") in ("GET", "HEAD"):
            return True
        fetch_site = _header(scope, b"sec-fetch-site")
        if fetch_site is not None and fetch_site.strip().lower() not in ("same-origin", "none"):
            return False
        return origin is None or self.same_origin(origin, host_header)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            host = _header(scope, b"host")
            origin = _header(scope, b"origin")
            if (not self.host_ok(host) or not self.origin_ok(origin, host)
                    or not self.command_ok(scope, origin, host)):  # fmt: skip
                log.warning("refused a request from origin %r for host %r", origin, host)
                if scope["type"] == "websocket":
                    close = WebSocketClose(code=CLOSE_POLICY_VIOLATION, reason="origin not allowed")
                    await close(scope, receive, send)
                else:
                    response = PlainTextResponse("this dashboard serves local pages only\n", 403)
                    await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
