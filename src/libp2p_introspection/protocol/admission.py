"""Who may open a session: bind address, browser origins, shared token, session count.

Pure functions over the WebSocket upgrade request (its path, query and
headers); the server's endpoint turns a refusal into an HTTP status, the
dashboard and the CLI use the origin and loopback rules too. See SECURITY.md.
"""

from __future__ import annotations

import hmac
import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from libp2p_introspection.config import TOKEN_HEADER, TOKEN_QUERY

_LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the endpoint on this machine only."""
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
#: An origin as browsers serialize it (RFC 6454 §6.1): scheme, host, optional port, and
#: nothing else: no userinfo, no path, no query, no backslash, no space.
_ORIGIN = re.compile(
    rf"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    rf"(?P<host>\[[0-9a-f:.]+\]|{_LABEL}(?:\.{_LABEL})*)"
    r"(?::(?P<port>[0-9]{1,5}))?",
    re.ASCII,
)


def parse_origin(origin: str) -> tuple[str, str, int | None] | None:
    """``(scheme, host, port)`` of an origin that is exactly ``scheme://host[:port]``
    (case-insensitive, lowercased here; one trailing slash is ignored), else ``None``.

    Stricter than a URL parser on purpose: ``http://evil.com\\@127.0.0.1`` is a URL
    whose host some parsers read as 127.0.0.1, and it is no origin at all.
    """
    text = origin.strip().lower()
    if text.endswith("/"):
        text = text[:-1]
    match = _ORIGIN.fullmatch(text)
    if match is None:
        return None
    port, host = match["port"], match["host"]
    if port is not None and not 0 < int(port) < 65536:
        return None
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return None
    return match["scheme"], host, int(port) if port is not None else None


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lowercased, without a trailing slash (for allowlist matching)."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, allowlist: Iterable[str] = ()) -> bool:
    """Browsers send ``Origin`` on WebSocket upgrades; other clients usually do not.

    Allowed: no ``Origin`` (command-line tools), loopback origins
    (``http(s)://localhost:*``, ``127.0.0.1:*``, ``[::1]:*``), and origins in
    ``allowlist`` (exact ``scheme://host[:port]`` strings). An ``Origin`` that is
    not exactly ``scheme://host[:port]`` (:func:`parse_origin`) is refused.
    """
    if origin is None:
        return True
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    if normalize_origin(origin) in {normalize_origin(o) for o in allowlist}:
        return True
    scheme, host, _ = parsed
    if scheme not in ("http", "https"):
        return False
    return host in _LOOPBACK_NAMES or is_loopback(host)


def presented_token(path: str, headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token a client presented: header ``X-Introspection-Token``, ``Authorization:
    Bearer``, or the ``token`` query parameter (in that order)."""
    for name, value in headers:
        key = name.decode("latin-1").lower()
        # Our clients send the token as UTF-8; decode it the same way.
        if key == TOKEN_HEADER:
            return value.decode("utf-8", "replace").strip()
        if key == "authorization":
            scheme, _, credentials = value.decode("utf-8", "replace").partition(" ")
            if scheme.lower() == "bearer":
                return credentials.strip()
    values = parse_qs(urlsplit(path).query).get(TOKEN_QUERY)
    return values[0] if values else None


def token_ok(expected: str | None, presented: str | None) -> bool:
    """Constant-time comparison; no token configured means every client is allowed."""
    if not expected:
        return True
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a WebSocket upgrade is refused: the HTTP ``status`` and a ``reason`` for the
    client and the log (never containing the token)."""

    status: int
    reason: str


def header(headers: Sequence[tuple[bytes, bytes]], name: str) -> str | None:
    """The first value of header ``name`` (case-insensitive), decoded, or ``None``."""
    wanted = name.lower()
    for key, value in headers:
        if key.decode("latin-1").lower() == wanted:
            return value.decode("latin-1")
    return None


def admit(
    path: str,
    headers: Sequence[tuple[bytes, bytes]],
    *,
    token: str | None,
    allowed_origins: Iterable[str],
    sessions: int,
    max_sessions: int,
) -> Refusal | None:
    """``None`` to accept the upgrade, else the :class:`Refusal` to answer with.

    Order: origin (403; more than one ``Origin`` header too), token (401), session
    limit (503).
    """
    origins = [v for k, v in headers if k.decode("latin-1").lower() == "origin"]
    if len(origins) > 1:
        return Refusal(403, f"{len(origins)} Origin headers (a browser sends one)")
    origin = origins[0].decode("latin-1") if origins else None
    if not origin_allowed(origin, allowed_origins):
        return Refusal(403, f"origin {origin!r} is not allowed (see --allow-origin)")
    if not token_ok(token, presented_token(path, headers)):
        return Refusal(401, "missing or wrong token")
    if sessions >= max_sessions:
        return Refusal(503, f"too many sessions (limit {max_sessions})")
    return None
