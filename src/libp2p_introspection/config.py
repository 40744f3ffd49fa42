"""Documented defaults shared by the server, the CLI and the clients.

Every value here is a default: each has a CLI option and a field in
:class:`libp2p_introspection.server.ServerConfig`.
"""

from __future__ import annotations

#: Loopback only, unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
#: The local introspection port clients look for by default.
DEFAULT_PORT = 8845
#: WebSocket path of the endpoint.
PATH = "/introspect"
#: Base snapshot interval (PROTOCOL.md §4.1), ms.
DEFAULT_INTERVAL_MS = 1_000
#: How long a closed connection stays in snapshots as CLOSED (§3), ms.
DEFAULT_CLOSED_CONNECTION_LIFETIME_MS = 120_000
#: Upper clamp of a session's retention_period_ms (§4.7), ms.
DEFAULT_MAX_RETENTION_MS = 120_000
#: Per-session byte budget of the pause buffer (§4.5), bytes.
DEFAULT_PUSH_BYTE_BUDGET = 32 * 1024 * 1024
#: Per-session bound of the outgoing queue (§4.6), messages.
DEFAULT_QUEUE_BOUND = 256
#: A client that reads nothing for this long is disconnected with 1008 (§4.6), seconds.
DEFAULT_WRITE_TIMEOUT_S = 10.0
#: After a close is decided, how long the frame in flight and the close frame may take
#: to go out before the TCP connection is closed under them (§4.6), seconds.
DEFAULT_CLOSE_GRACE_S = 5.0


def normalize_url(text: str) -> str:
    """An introspection URL from what a user typed: ``ws://`` and ``wss://`` URLs are
    kept (``/introspect`` added to an empty path); ``HOST:PORT`` and ``HOST`` (default
    port) become ``ws://HOST:PORT/introspect``. Raises ``ValueError`` otherwise."""
    from urllib.parse import urlsplit, urlunsplit

    text = text.strip()
    if not text:
        raise ValueError("give a URL such as ws://127.0.0.1:8845/introspect")
    if "://" not in text:
        text = "ws://" + text
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"not a WebSocket URL: {text} (use ws://HOST:PORT/introspect)")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"bad port in {text}") from exc
    if not parts.hostname:
        raise ValueError(f"no host in {text}")
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


#: Concurrent sessions the server accepts; past it, upgrades get HTTP 503.
DEFAULT_MAX_SESSIONS = 64
#: Sustained commands per second a session may send (token bucket; §4.8 ERR past it).
DEFAULT_COMMANDS_PER_SECOND = 50.0
#: Commands a session may send in one burst before the rate applies.
DEFAULT_COMMAND_BURST = 100
#: Seconds between WebSocket pings the server sends to each session.
DEFAULT_PING_INTERVAL_S = 15.0
#: A session whose pong has not come back this long after a ping is closed, seconds.
DEFAULT_PONG_TIMEOUT_S = 30.0
#: Seconds a client has to complete the WebSocket handshake (half-open connections).
DEFAULT_HANDSHAKE_TIMEOUT_S = 10.0
#: Environment variable holding the shared token (server and clients) when ``--token``
#: is not given.
TOKEN_ENV = "LIBP2P_INTROSPECTION_TOKEN"
#: Header carrying the token (``Authorization: Bearer TOKEN`` is accepted too).
TOKEN_HEADER = "x-introspection-token"
#: Query parameter carrying the token, for clients that cannot set headers (browsers).
TOKEN_QUERY = "token"
