"""Who may open a session: bind address, browser origins, shared token, session count.

Pure functions over the WebSocket upgrade request (its path, query and
headers); the endpoint turns a refusal into an HTTP status. See SECURITY.md.
"""

from __future__ import annotations

import hmac
import ipaddress
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


def normalize_origin(origin: str) -> str:
    """``scheme://host[:port]`` lowercased, without a trailing slash (for allowlist matching)."""
    return origin.strip().rstrip("/").lower()


def origin_allowed(origin: str | None, allowlist: Iterable[str] = ()) -> bool:
    """Browsers send ``Origin`` on WebSocket upgrades; other clients usually do not.

    Allowed: no ``Origin`` (command-line tools), loopback origins
    (``http(s)://localhost:*``, ``127.0.0.1:*``, ``[::1]:*``), and origins in
    ``allowlist`` (exact ``scheme://host[:port]`` strings).
    """
    if origin is None:
        return True
    normalized = normalize_origin(origin)
    if normalized in {normalize_origin(o) for o in allowlist}:
        return True
    parts = urlsplit(normalized)
    if parts.scheme not in ("http", "https"):
        return False
    host = parts.hostname or ""
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

    Order: origin (403), token (401), session limit (503).
    """
    origin = header(headers, "origin")
    if not origin_allowed(origin, allowed_origins):
        return Refusal(403, f"origin {origin!r} is not allowed (see --allow-origin)")
    if not token_ok(token, presented_token(path, headers)):
        return Refusal(401, "missing or wrong token")
    if sessions >= max_sessions:
        return Refusal(503, f"too many sessions (limit {max_sessions})")
    return None
