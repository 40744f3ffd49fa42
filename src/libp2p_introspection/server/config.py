"""The server's options, defined once (:data:`SERVER_OPTIONS`), and :class:`ServerConfig`.

:data:`SERVER_OPTIONS` is every option of the introspection server: the session
options of :mod:`libp2p_introspection.protocol.limits` and the server's own
(where to listen, admission, liveness, closing). ``ServerConfig``'s fields,
``attach_introspection``'s keyword options and the CLI's flags of ``serve`` and
``demo`` (``libp2p_introspection.cli.options``) are all derived from it, and
every value is checked by the same rules (:func:`check_server_options`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from libp2p_introspection import config as defaults
from libp2p_introspection.protocol.admission import is_loopback, parse_origin
from libp2p_introspection.protocol.discovery import INTROSPECTION_PORTS, SERVICE_TYPE
from libp2p_introspection.protocol.limits import (
    SESSION_OPTIONS,
    SESSION_RELATIONS,
    Option,
    OptionError,
    Relation,
    SessionLimits,
    check_options,
)

log = logging.getLogger("libp2p_introspection.server.server")


def _origins_refusal(origins: tuple[str, ...]) -> str | None:
    """An allowed origin is exactly ``scheme://host[:port]``, as browsers send it."""
    for value in origins:
        parsed = parse_origin(value)
        if parsed is None or parsed[0] not in ("http", "https"):
            return (
                f"{value!r} is not an origin; give it as a browser sends it, e.g. "
                "https://observer.example.org or http://localhost:3000"
            )
    return None


def _token_refusal(token: str | None) -> str | None:
    try:
        defaults.check_token(token)
    except ValueError as exc:
        return str(exc)
    return None


def _remote_needs_consent(values: Mapping[str, Any]) -> None:
    """A non-loopback bind address only with ``allow_remote`` (see SECURITY.md)."""
    if not values["allow_remote"] and not is_loopback(values["host"]):
        raise OptionError(
            f"refusing to bind {{0}} {values['host']}: it is not a loopback address, and the "
            "endpoint exposes the node's peers, addresses and traffic; add {1} to do it "
            "anyway (see SECURITY.md)",
            "host", "allow_remote",
        )  # fmt: skip


_SESSION = {option.name: option for option in SESSION_OPTIONS}

#: Every server option, in ``--help`` order.
SERVER_OPTIONS: tuple[Option, ...] = (
    Option("host", str, defaults.DEFAULT_HOST, "", "Address to bind (loopback by default)."),
    Option("port", int, None, "",
           f"Port to bind (default: {INTROSPECTION_PORTS.describe()}, the first free one; "
           "0 picks any free one). A port given and taken is an error.",
           minimum=0, maximum=65535),
    _SESSION["interval_ms"],
    Option("closed_connection_lifetime_ms", int, defaults.DEFAULT_CLOSED_CONNECTION_LIFETIME_MS,
           "ms", "How long a closed connection stays in snapshots as CLOSED, ms.", minimum=0),
    _SESSION["max_retention_ms"],
    _SESSION["push_byte_budget"],
    _SESSION["push_item_budget"],
    _SESSION["queue_bound"],
    _SESSION["write_timeout_s"],
    Option("close_grace_s", float, 5.0, "s",
           "Once a session is closed, how long the frame in flight and the close frame may "
           "take before the TCP connection is closed, seconds.", minimum=0, above=True),
    Option("allow_remote", bool, False, "",
           "Allow --host to be a non-loopback address (see SECURITY.md)."),
    Option("announce", bool, False, "",
           "Also announce the server on the local network over mDNS "
           f"({SERVICE_TYPE.removesuffix('.local.')}); needs a non-loopback --host."),
    Option("register", bool, True, "",
           "Write an entry in the user's registry of local servers, for clients without "
           "a URL (PROTOCOL.md §6).", flag=""),
    Option("allowed_origins", tuple, (), "",
           "Also accept browsers from this origin (scheme://host[:port]); repeatable. "
           "Loopback origins are always accepted.",
           check=_origins_refusal, flag="--allow-origin", metavar="ORIGIN"),
    Option("token", str, None, "",
           "Require this shared token from every client (header X-Introspection-Token, "
           "Authorization: Bearer, or ?token=).", check=_token_refusal,
           envvar=defaults.TOKEN_ENV),
    Option("max_sessions", int, 64, "sessions", "Concurrent sessions (then HTTP 503).",
           minimum=1),
    Option("max_handshakes", int, 128, "connections",
           "Connections still in their handshake (or being refused) at once; at the limit "
           "a new connection closes the oldest of them.", minimum=1),
    _SESSION["commands_per_second"],
    _SESSION["command_burst"],
    Option("ping_interval_s", float, 15.0, "s", "Seconds between pings to each session.",
           minimum=0, above=True),
    Option("pong_timeout_s", float, 30.0, "s", "Close a session whose pong is this late, seconds.",
           minimum=0, above=True),
    Option("handshake_timeout_s", float, 10.0, "s",
           "Drop a connection that has not completed its handshake, seconds.", minimum=0,
           above=True),
    _SESSION["max_command_size"],
    Option("metrics_port", int, None, "",
           "Serve Prometheus metrics on http://HOST:PORT/metrics (off by default; 0 picks a "
           "free port); same bind address, token and origins as the introspection port.",
           minimum=0, maximum=65535, metavar="PORT"),
    Option("metrics_per_peer", bool, False, "",
           "Metrics: also export per-peer families (a series per peer id: for small "
           "deployments only)."),
)  # fmt: skip

def _announce_needs_reach(values: Mapping[str, Any]) -> None:
    """``announce`` tells the local network where the server is: it must listen beyond
    loopback (§6)."""
    if values["announce"] and is_loopback(values["host"]):
        raise OptionError(
            f"{{0}} announces the server to the local network, but {{1}} {values['host']} "
            "is a loopback address that no other machine can reach; bind an address of "
            "this machine on the network with {1} (and {2})",
            "announce", "host", "allow_remote",
        )  # fmt: skip


#: Rules between server options.
SERVER_RELATIONS: tuple[Relation, ...] = (
    *SESSION_RELATIONS, _remote_needs_consent, _announce_needs_reach,
)

OPTIONS_BY_NAME: dict[str, Option] = {option.name: option for option in SERVER_OPTIONS}


def check_server_options(
    values: Mapping[str, Any], spell: Callable[[str], str] | None = None
) -> None:
    """Check the server options ``values`` (by option name, all of them).

    Raises :class:`~libp2p_introspection.protocol.limits.OptionError` (a
    ``ValueError``) naming the options by ``spell`` (their names by default).
    """
    check_options(SERVER_OPTIONS, values, SERVER_RELATIONS, spell=spell)


def _default(name: str) -> Any:
    return OPTIONS_BY_NAME[name].default


@dataclass(frozen=True)
class ServerConfig:
    """Options of the introspection server: one field per entry of :data:`SERVER_OPTIONS`.

    Each option's meaning, unit, default and accepted values are its entry there (its
    help text: what ``--help`` and the README's table show); the fields here only
    hold the values. ``limits`` is the ``SessionLimits`` built from the session
    options; :meth:`for_source` replaces the base interval by a source's own (§4.10).

    Raises :class:`~libp2p_introspection.protocol.limits.OptionError` (a
    ``ValueError``) for a value its option refuses, a max retention below the
    interval, or a non-loopback host without ``allow_remote``.
    """

    host: str = _default("host")
    port: int | None = _default("port")
    interval_ms: int = _default("interval_ms")
    closed_connection_lifetime_ms: int = _default("closed_connection_lifetime_ms")
    max_retention_ms: int = _default("max_retention_ms")
    push_byte_budget: int = _default("push_byte_budget")
    push_item_budget: int = _default("push_item_budget")
    queue_bound: int = _default("queue_bound")
    write_timeout_s: float = _default("write_timeout_s")
    max_command_size: int = _default("max_command_size")
    max_sessions: int = _default("max_sessions")
    max_handshakes: int = _default("max_handshakes")
    commands_per_second: float = _default("commands_per_second")
    command_burst: int = _default("command_burst")
    ping_interval_s: float = _default("ping_interval_s")
    pong_timeout_s: float = _default("pong_timeout_s")
    handshake_timeout_s: float = _default("handshake_timeout_s")
    close_grace_s: float = _default("close_grace_s")
    allow_remote: bool = _default("allow_remote")
    announce: bool = _default("announce")
    register: bool = _default("register")
    allowed_origins: tuple[str, ...] = _default("allowed_origins")
    token: str | None = field(default=_default("token"), repr=False)
    metrics_port: int | None = _default("metrics_port")
    metrics_per_peer: bool = _default("metrics_per_peer")
    limits: SessionLimits = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_server_options(self.values())
        object.__setattr__(
            self,
            "limits",
            SessionLimits(**{o.limit: getattr(self, o.name) for o in SESSION_OPTIONS}),
        )

    def values(self) -> dict[str, Any]:
        """Every option's value, by option name."""
        return {option.name: getattr(self, option.name) for option in SERVER_OPTIONS}

    def for_source(self, declared_interval_ms: int | None) -> ServerConfig:
        """This config with the base interval a source declares (a replay's, §4.10),
        ms, in place of ``interval_ms``; ``None``: this config. The max retention is
        raised to that interval if below it (§4.10). Both are logged at INFO."""
        if declared_interval_ms is None or declared_interval_ms == self.interval_ms:
            return self
        log.info(
            "base snapshot interval: %d ms, from the source (not --interval-ms %d)",
            declared_interval_ms, self.interval_ms,
        )  # fmt: skip
        retention = self.max_retention_ms
        if retention < declared_interval_ms:
            log.info(
                "max retention raised from %d ms to the %d ms base interval",
                retention, declared_interval_ms,
            )  # fmt: skip
            retention = declared_interval_ms
        return replace(self, interval_ms=declared_interval_ms, max_retention_ms=retention)

