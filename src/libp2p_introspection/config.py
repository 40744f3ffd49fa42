"""Addresses, the token's names and the text helpers shared by the server, the CLI and
the clients.

The server's options (their defaults, units, help and checks) are defined once,
in :data:`libp2p_introspection.server.config.SERVER_OPTIONS`; the defaults here
are the ones clients need too (where a server listens by default, the
dashboard's port) and the closed-connection lifetime every source applies.

The default ports are written here and nowhere else: the port plans of
:mod:`libp2p_introspection.protocol.discovery` (the first port, then the
fallback range, §6) start from them. This module imports nothing of the
package, so every layer may use it (``protocol`` included).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

#: Loopback only, unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
#: The local introspection port clients look for by default.
DEFAULT_PORT = 8845
#: WebSocket path of the endpoint.
PATH = "/introspect"
#: The port of the dashboard page (``libp2p-introspect dashboard``, and ``demo``'s).
DEFAULT_DASHBOARD_PORT = 8846
#: The port of a metrics endpoint opened without one (the demo's).
DEFAULT_METRICS_PORT = 8847
#: How long a closed connection stays in snapshots as CLOSED (§3), ms.
DEFAULT_CLOSED_CONNECTION_LIFETIME_MS = 120_000
#: The server's default upper clamp of ``retention_period_ms`` (§4.7), ms; also how far
#: back a dashboard keeps live data by default.
DEFAULT_MAX_RETENTION_MS = 120_000
#: A client (the recorder) gives up on a server that sends nothing this long, seconds.
DEFAULT_IDLE_TIMEOUT_S = 60.0


#: A host name (RFC 1123 labels; ``_`` tolerated) or an IPv4 address, as a URL may carry it.
_LABEL = r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(\.{_LABEL})*\.?")


def normalize_url(text: str) -> str:
    """An introspection URL from what a user typed: ``ws://`` and ``wss://`` URLs are
    kept (``/introspect`` added to an empty path); ``HOST:PORT`` and ``HOST`` (default
    port) become ``ws://HOST:PORT/introspect``. Raises ``ValueError`` otherwise, and for
    a host that is neither a host name nor an IP address (``not a url``), so that no
    such text is ever looked up in the DNS, and for a text UTF-8 cannot encode (a lone
    surrogate: no client can send it, and every answer naming it would fail)."""
    import ipaddress
    from urllib.parse import urlsplit, urlunsplit

    text = text.strip()
    example = default_url()
    if not text:
        raise ValueError(f"give a URL such as {example}")
    typed = text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (a JSON "\\ud800", bytes not UTF-8)
        raise ValueError(f"not a URL: {typed!r} (it holds a lone surrogate)") from None
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {typed} (use ws://HOST:PORT/introspect)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {typed}") from exc
    if not parts.hostname:
        raise ValueError(f"no host in {typed}")
    if ":" in parts.hostname:
        try:
            ipaddress.IPv6Address(parts.hostname.partition("%")[0])
        except ValueError:
            raise ValueError(f"not an IPv6 address in {typed}") from None
    elif not _HOSTNAME.fullmatch(parts.hostname):
        raise ValueError(
            f"not a URL: {typed!r} (give ws://HOST:PORT/introspect or HOST:PORT, "
            f"e.g. {example})"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if port is None:
        port = DEFAULT_PORT if parts.scheme == "ws" else 443
    path = parts.path if parts.path not in ("", "/") else PATH
    return urlunsplit((parts.scheme, f"{host}:{port}", path, parts.query, ""))


def default_url(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> str:
    """``ws://HOST:PORT/introspect``; IPv6 literals get brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}{PATH}"


def page_url(host: str = DEFAULT_HOST, port: int = DEFAULT_DASHBOARD_PORT) -> str:
    """``http://HOST:PORT/``, the dashboard page's address; IPv6 literals get brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{port}/"


#: Environment variable holding the shared token (server and clients) when ``--token``
#: is not given.
TOKEN_ENV = "LIBP2P_INTROSPECTION_TOKEN"
#: Header carrying the token (``Authorization: Bearer TOKEN`` is accepted too).
TOKEN_HEADER = "x-introspection-token"
#: Query parameter carrying the token, for clients that cannot set headers (browsers).
TOKEN_QUERY = "token"


#: What a token is shown as wherever it would otherwise appear.
REDACTED = "***"

_TOKEN_PATTERNS = (
    # The value of a ``token`` query parameter, in a URL anywhere in the text.
    re.compile(r"(?i)([?&;]token=)[^&#\s'\"<>]*"),
    # A token header as text (``X-Introspection-Token: T``) or as a repr'd pair.
    re.compile(r"(?i)(x-introspection-token['\"]?\s*[:,=]\s*b?['\"]?)[^'\"\s,)]+"),
    re.compile(r"(?i)(bearer\s+)[^'\"\s,)]+"),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every token in it replaced by ``***``, to show or log it.

    Hidden: each of ``secrets`` (the ``--token`` value, the environment's)
    wherever it occurs, the value of every ``token`` query parameter of a URL
    (``ws://HOST:PORT/introspect?token=***``), and what follows an
    ``X-Introspection-Token`` header name or ``Bearer``. The rest of the text,
    and so a URL's scheme, host, port and path, are kept.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + REDACTED, text)
    return text


#: Characters that steer a terminal or reorder text: C0 and C1 controls (ESC, BEL,
#: CR, ...), DEL, the line and paragraph separators and the bidirectional overrides;
#: and the backslash, so that the text ``\x1b`` cannot pass for an escaped ESC.
_UNPRINTABLE = re.compile(
    "[\\\\\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def printable(text: str) -> str:
    """``text`` safe to write to a terminal: every control character but newline and
    tab (an escape sequence, a carriage return, a bidirectional override) is shown
    as a Python escape (``\\x1b``, ``\\r``, ``\\u202e``) instead of acting, and a
    backslash as ``\\\\`` (so the text ``\\x1b`` shows as ``\\\\x1b``, never as an ESC).

    Strings from a server or a file (peer ids, event types, close reasons, HTTP
    bodies) pass through it before the CLI prints or logs them.
    """
    return _UNPRINTABLE.sub(lambda match: match.group().encode("unicode_escape").decode(), text)


def token_secrets(url: str | None = None, *tokens: str | None) -> tuple[str, ...]:
    """What :func:`redact` must hide for a client of ``url``: each of ``tokens`` and
    each ``token`` query parameter of ``url``, as written and percent-decoded."""
    from urllib.parse import parse_qsl, urlsplit

    found = [t for t in tokens if t]
    if url:
        try:
            query = urlsplit(url).query
        except ValueError:
            query = url.partition("?")[2]
        for part in query.split("&"):
            name, _, value = part.partition("=")
            if name.lower() == TOKEN_QUERY and value:
                found.append(value)
        found += [v for n, v in parse_qsl(query) if n.lower() == TOKEN_QUERY]
    # Longest first, so that no shorter secret splits a longer one before it is hidden.
    return tuple(sorted(set(found), key=len, reverse=True))


class RedactTokens(logging.Filter):
    """A logging filter that passes every record with its tokens :func:`redact`-ed
    and its control characters made :func:`printable` (message, arguments and
    traceback text); ``secrets`` as for :func:`redact`."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = printable(redact(message, self.secrets))
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = printable(redact(record.exc_text, self.secrets))
        if record.stack_info:
            record.stack_info = printable(redact(record.stack_info, self.secrets))
        return True


def check_token(token: str | None) -> str | None:
    """``token`` if it can be sent in an HTTP header (``None`` or ``""``: none).

    Raises ``ValueError`` for a token with control characters (a newline, say) or
    spaces at either end; the message never contains the token.
    """
    if token and (
        token != token.strip()
        or any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in token)
    ):
        raise ValueError(
            "the token must not contain control characters or start or end with a space "
            "(it is sent in an HTTP header)"
        )
    return token
