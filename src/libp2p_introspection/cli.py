"""``libp2p-introspect``: the command line (also ``python -m libp2p_introspection``).

Commands:

- ``demo``: the main job. A small network of real py-libp2p nodes on loopback,
  with the introspection server of one of them; prints the URL and what to do next.
- ``serve``: the introspection server alone, for a source: ``demo`` (the
  default), ``mock`` (a synthetic node) or a recording file (replayed);
  prints the ``ws://`` URL on stdout as soon as it accepts connections.
- ``record``: the data-dump tool; writes a session into a recording file.
- ``inspect``: what a recording file holds.
- ``watch``: a small protocol client that pulls snapshots and prints one line each.
- ``dashboard``: the live dashboard, a web page fed by a protocol client
  (``demo`` starts one too).
"""

from __future__ import annotations

import errno
import functools
import inspect as pyinspect
import json
import logging
import math
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import click
import trio
from trio_websocket import ConnectionClosed, ConnectionRejected, ConnectionTimeout, HandshakeError

from libp2p_introspection import __version__
from libp2p_introspection import config as defaults
from libp2p_introspection.abc import IntrospectionSource
from libp2p_introspection.client.connection import ProtocolError
from libp2p_introspection.protocol.admission import is_loopback
from libp2p_introspection.server import ServerConfig

log = logging.getLogger("libp2p_introspection")
#: Lines a healthy run shows at INFO by default (what is served, where).
status_log = logging.getLogger("libp2p_introspection.cli")
#: Loggers whose INFO lines show without -v: what a command is doing, when all is well
#: (WARNING and above mean something is wrong).
_STATUS_LOGGERS = ("libp2p_introspection.cli", "libp2p_introspection.record")


def _self_command() -> str:
    """How to run this CLI again from another terminal: the command name if it is on
    PATH, else the path of the one running (e.g. a virtualenv's ``.venv/bin/...``)."""
    name = "libp2p-introspect"
    if shutil.which(name):
        return name
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == name:
        return os.path.relpath(script) if script.startswith(os.getcwd()) else script
    return f"{sys.executable} -m libp2p_introspection"


def _check_origins(
    ctx: click.Context, param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    """An allowed origin is exactly ``scheme://host[:port]``, as browsers send it."""
    from libp2p_introspection.protocol.admission import parse_origin

    for value in values:
        parsed = parse_origin(value)
        if parsed is None or parsed[0] not in ("http", "https"):
            raise click.BadParameter(
                f"{value!r} is not an origin; give it as a browser sends it, e.g. "
                "https://observer.example.org or http://localhost:3000",
            )
    return values


def _limit_options(what: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--max-connections`` and ``--max-streams``: the cap on what one snapshot of
    ``what`` may hold before it is skipped with a notice (protocol/wire.py)."""
    from libp2p_introspection.protocol.wire import MAX_CONNECTIONS, MAX_STREAMS

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--max-streams", default=MAX_STREAMS, show_default=True, type=click.IntRange(min=1),
            help=f"{what}: skip, with a notice, a snapshot holding more streams than this.",
        )(func)  # fmt: skip
        return click.option(
            "--max-connections", default=MAX_CONNECTIONS, show_default=True,
            type=click.IntRange(min=1),
            help=f"{what}: skip, with a notice, a snapshot holding more connections than this.",
        )(func)  # fmt: skip

    return decorate


def _limits(kw: dict[str, Any]) -> Any:
    """The ``RecordLimits`` of ``--max-connections`` and ``--max-streams``."""
    from libp2p_introspection.protocol.wire import RecordLimits

    return RecordLimits(max_connections=kw["max_connections"], max_streams=kw["max_streams"])


def _url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return defaults.normalize_url(value)
    except ValueError as exc:  # the message quotes the URL: never its token
        raise click.BadParameter(defaults.redact(str(exc), defaults.token_secrets(value))) from None


def _token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return defaults.check_token(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise click.BadParameter("must be a finite number of seconds")
    return value


def _connection_error(error: BaseException) -> str | None:
    """A one-line reason if ``error`` (or every leaf of an exception group) is a failure
    to reach or talk to a server, else ``None``."""
    if isinstance(error, BaseExceptionGroup):
        reasons = [_connection_error(inner) for inner in error.exceptions]
        return reasons[0] if reasons and all(reasons) else None
    if isinstance(error, ConnectionRejected):
        body = " ".join((error.body or b"")[:1000].decode("utf-8", "replace").split())
        said = f": {body}" if body else ""
        return f"the server refused the connection (HTTP {error.status_code}){said}"
    if isinstance(error, ConnectionTimeout):
        return "the server did not complete the WebSocket handshake in time"
    if isinstance(error, HandshakeError | OSError | ProtocolError):
        cause = error.__cause__ or error.__context__
        if not str(error) and cause is not None:  # trio-websocket wraps a refused TCP connect
            return _connection_error(cause) or str(cause)
        return str(error) or type(error).__name__
    if isinstance(error, ConnectionClosed):
        reason = error.reason
        return f"the server closed the connection ({reason.code} {reason.reason or ''})".strip()
    return None


def _refused(error: BaseException | None) -> bool:
    """Whether ``error`` is, or was caused by, a refused TCP connection (nothing listens)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, BaseExceptionGroup):
            return any(_refused(inner) for inner in error.exceptions)
        if isinstance(error, ConnectionRefusedError):
            return True
        error = error.__cause__ or error.__context__
    return False


def _unreachable(url: str, error: BaseException) -> str:
    """The reason a client could not reach ``url``; when nothing listens there, with
    how to start a server at that address."""
    from urllib.parse import urlsplit

    reason = _connection_error(error) or str(error)
    if not _refused(error):
        return reason
    parts = urlsplit(url)
    host, port = parts.hostname or defaults.DEFAULT_HOST, parts.port or defaults.DEFAULT_PORT
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    text = f"nothing is listening on {where} (connection refused)"
    if not is_loopback(host) and host != "localhost":
        return f"{text}; is the introspection server running there?"
    me = _self_command()
    moved = "" if port == defaults.DEFAULT_PORT else f" --port {port}"
    demo, replay = f"{me} demo{moved}", f"{me} serve --source FILE.mock{moved}"
    width = max(len(demo), len(replay))
    return (
        f"{text}.\nStart a server there first, in another terminal:\n"
        f"  {demo.ljust(width)}   # a demo network of py-libp2p nodes\n"
        f"  {replay.ljust(width)}   # a recording, replayed"
    )


def _bind_failure(error: OSError, what: str, host: str, port: int, hint: str) -> str | None:
    """The one-line error for ``error`` raised binding ``what`` on ``host:port``, naming the
    option that moves it (``hint``); ``None`` if ``error`` is not about the address."""
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if error.errno == errno.EADDRINUSE:
        return (
            f"cannot serve {what} on {where}: port {port} is already in use (another "
            f"libp2p-introspect, perhaps); {hint}"
        )
    if error.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve {what} on {where}: {host} is not an address of this machine; " \
               "choose another with --host"  # fmt: skip
    return None


@contextmanager
def _binding(what: str, host: str, port: int, hint: str) -> Iterator[None]:
    """A failure to bind ``host:port`` in the block becomes a one-line error naming the
    port and the option that changes it (``hint``), also from inside a nursery."""
    try:
        yield
    except (OSError, BaseExceptionGroup) as exc:
        found = exc.subgroup(OSError) if isinstance(exc, BaseExceptionGroup) else exc
        message = _bind_failure(_first_leaf(found), what, host, port, hint) if found else None
        if message is None:
            raise
        raise click.ClickException(message) from None


def _port_hint(option: str, extra: str = "") -> str:
    return f"choose another with {option} N ({option} 0 picks a free one){extra}"


def _default_url_in_help(func: Callable[..., Any]) -> Callable[..., Any]:
    """Say in a client command's ``--help`` which server it reaches without a URL."""
    func.__doc__ = (
        pyinspect.cleandoc(func.__doc__ or "")
        + f"\n\nURL defaults to {defaults.default_url()} (HOST:PORT works too)."
    )
    return func


def _server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every serving command shares, with their documented defaults."""
    options = [
        click.option("--host", default=defaults.DEFAULT_HOST, show_default=True,
                     help="Address to bind (loopback by default)."),
        click.option("--port", default=defaults.DEFAULT_PORT, show_default=True,
                     type=click.IntRange(0, 65535),
                     help="Port to bind (0 picks a free one)."),
        click.option("--interval-ms", default=defaults.DEFAULT_INTERVAL_MS, show_default=True,
                     type=click.IntRange(min=10),
                     help="Base snapshot interval, ms (PROTOCOL.md §4.1)."),
        click.option("--closed-connection-lifetime-ms",
                     default=defaults.DEFAULT_CLOSED_CONNECTION_LIFETIME_MS, show_default=True,
                     type=click.IntRange(min=0),
                     help="How long a closed connection stays in snapshots as CLOSED, ms."),
        click.option("--max-retention-ms", default=defaults.DEFAULT_MAX_RETENTION_MS,
                     show_default=True, type=click.IntRange(min=1),
                     help="Upper clamp of a client's retention_period_ms, ms."),
        click.option("--push-byte-budget", default=defaults.DEFAULT_PUSH_BYTE_BUDGET,
                     show_default=True, type=click.IntRange(min=1),
                     help="Per-session pause buffer budget, bytes."),
        click.option("--push-item-budget", default=defaults.DEFAULT_PUSH_ITEM_BUDGET,
                     show_default=True, type=click.IntRange(min=1),
                     help="Per-session pause buffer limit, events and snapshots."),
        click.option("--queue-bound", default=defaults.DEFAULT_QUEUE_BOUND, show_default=True,
                     type=click.IntRange(min=1),
                     help="Per-session outgoing queue bound for push data, messages."),
        click.option("--write-timeout", default=defaults.DEFAULT_WRITE_TIMEOUT_S,
                     show_default=True, type=click.FloatRange(min=0.1),
                     help="Disconnect (1008) a client that reads nothing this long, seconds."),
        click.option("--close-grace", default=defaults.DEFAULT_CLOSE_GRACE_S,
                     show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Once a session is closed, how long the frame in flight and the "
                          "close frame may take before the TCP connection is closed, seconds."),
        click.option("--allow-remote", is_flag=True,
                     help="Allow --host to be a non-loopback address (see SECURITY.md)."),
        click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
                     callback=_check_origins,
                     help="Also accept browsers from this origin (scheme://host[:port]); "
                          "repeatable. Loopback origins are always accepted."),
        click.option("--token", envvar=defaults.TOKEN_ENV, default=None, show_envvar=True,
                     help="Require this shared token from every client (header "
                          "X-Introspection-Token, Authorization: Bearer, or ?token=)."),
        click.option("--max-sessions", default=defaults.DEFAULT_MAX_SESSIONS, show_default=True,
                     type=click.IntRange(min=1), help="Concurrent sessions (then HTTP 503)."),
        click.option("--max-handshakes", default=defaults.DEFAULT_MAX_HANDSHAKES,
                     show_default=True, type=click.IntRange(min=1),
                     help="Connections still in their handshake at once; past it a new "
                          "connection is closed as soon as it is accepted."),
        click.option("--commands-per-second", default=defaults.DEFAULT_COMMANDS_PER_SECOND,
                     show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Sustained commands per session per second (then ERR)."),
        click.option("--command-burst", default=defaults.DEFAULT_COMMAND_BURST,
                     show_default=True, type=click.IntRange(min=1),
                     help="Commands a session may send in one burst."),
        click.option("--ping-interval", default=defaults.DEFAULT_PING_INTERVAL_S,
                     show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Seconds between pings to each session."),
        click.option("--pong-timeout", default=defaults.DEFAULT_PONG_TIMEOUT_S,
                     show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Close a session whose pong is this late, seconds."),
        click.option("--handshake-timeout", default=defaults.DEFAULT_HANDSHAKE_TIMEOUT_S,
                     show_default=True, type=click.FloatRange(min=0, min_open=True),
                     help="Drop a connection that has not completed its handshake, seconds."),
        click.option("--nodes", default=4, show_default=True, type=click.IntRange(min=2),
                     help="Demo source: number of py-libp2p nodes."),
        click.option("--no-churn", is_flag=True,
                     help="Demo source: nodes never leave and rejoin (they do by default)."),
        click.option("--seed", default=None, type=int,
                     help="Demo and mock sources: seed for their random choices."),
        click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _setup_logging(verbose: int, secrets: tuple[str, ...] = ()) -> None:
    """Log to stderr at WARNING (INFO, DEBUG with -v, -vv), and the status lines of
    :data:`_STATUS_LOGGERS` at INFO; no line shows a token (the ``secrets`` given, or
    one in a URL or header)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    redactor = defaults.RedactTokens(secrets)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, defaults.RedactTokens)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
    if verbose < 2:
        logging.getLogger("libp2p").setLevel(max(level, logging.WARNING))
    logging.getLogger("libp2p_introspection").setLevel(level)
    for name in _STATUS_LOGGERS:
        logging.getLogger(name).setLevel(min(level, logging.INFO))


def _config(kw: dict[str, Any]) -> ServerConfig:
    """The server options of a command; a usage error for a non-loopback host without
    --allow-remote, and a warning naming what is exposed with it."""
    if not kw["allow_remote"] and not is_loopback(kw["host"]):
        raise click.UsageError(
            f"refusing to bind --host {kw['host']}: it is not a loopback address, and the "
            "endpoint exposes the node's peers, addresses and traffic; add --allow-remote "
            "to do it anyway (see SECURITY.md)"
        )
    try:
        config = ServerConfig(
            host=kw["host"],
            port=kw["port"],
            interval_ms=kw["interval_ms"],
            closed_connection_lifetime_ms=kw["closed_connection_lifetime_ms"],
            max_retention_ms=kw["max_retention_ms"],
            push_byte_budget=kw["push_byte_budget"],
            push_item_budget=kw["push_item_budget"],
            queue_bound=kw["queue_bound"],
            write_timeout_s=kw["write_timeout"],
            close_grace_s=kw["close_grace"],
            max_sessions=kw["max_sessions"],
            max_handshakes=kw["max_handshakes"],
            commands_per_second=kw["commands_per_second"],
            command_burst=kw["command_burst"],
            ping_interval_s=kw["ping_interval"],
            pong_timeout_s=kw["pong_timeout"],
            handshake_timeout_s=kw["handshake_timeout"],
            allow_remote=kw["allow_remote"],
            allowed_origins=tuple(kw["allow_origins"]),
            token=kw["token"] or None,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    if not is_loopback(config.host):
        click.echo(
            f"WARNING: serving introspection on {config.host}, beyond this machine: whoever "
            "reaches the port sees this node's peer ids, their IP addresses, every stream's "
            "protocol, traffic volumes and DHT routing table"
            + ("" if config.token else ", and no --token is set")
            + ". See SECURITY.md.",
            err=True,
        )
    return config


def _run(async_fn: Callable[[], Any]) -> None:
    """Run under trio; Ctrl-C ends cleanly, a bind failure is a clear error."""
    try:
        trio.run(async_fn)
    except KeyboardInterrupt:
        click.echo("stopped", err=True)
    except OSError as exc:
        raise click.ClickException(f"cannot serve: {exc}") from exc
    except BaseExceptionGroup as group:  # errors from inside nurseries arrive grouped
        if group.subgroup(KeyboardInterrupt) is not None:
            click.echo("stopped", err=True)
            return
        clear = group.subgroup(click.ClickException)  # already one clear line
        if clear is not None:
            raise _first_leaf(clear) from None
        errors = group.subgroup(OSError)
        if errors is None:
            raise
        raise click.ClickException(f"cannot serve: {_first_leaf(errors)}") from group


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


class _Commands(click.Group):
    """The command group; an error's message is made :func:`~libp2p_introspection.config.printable`
    before click shows it (it may quote a server's close reason or HTTP body)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.ClickException as error:
            error.message = defaults.printable(error.message)
            raise


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="libp2p-introspect")
def main() -> None:
    """Introspection data streaming for py-libp2p nodes."""


@main.command(short_help="A live demo network of real py-libp2p nodes (the main job).")
@_server_options
@click.option(
    "--dashboard-port",
    default=defaults.DEFAULT_DASHBOARD_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the dashboard page started beside the network (0 picks a free one).",
)
@click.option("--no-dashboard", is_flag=True, help="Do not start the dashboard.")
def demo(**kw: Any) -> None:
    """Start a demo network of real py-libp2p nodes and serve one of them (the main job)."""
    _setup_logging(kw["verbose"])
    config = _config(kw)

    def announce(url: str, what: str, dashboard_url: str | None = None) -> None:
        click.echo(url)
        click.echo(f"\nServing live introspection data of {what}.\n")
        if dashboard_url:
            click.echo(f"Dashboard: {dashboard_url}   (open it in a browser)\n")
        click.echo(
            "What to do next:\n"
            f"  {_self_command()} watch {url}     # a line per snapshot, in this terminal\n"
            f"  {_self_command()} record {url} -o node.mock   # record it to a file\n"
            "  point libp2p's observer-toolkit UI or any protocol client at the URL above\n"
            "  Ctrl-C stops the network and the server.",
        )
        sys.stdout.flush()

    dashboard_port = None if kw["no_dashboard"] else kw["dashboard_port"]
    _run(functools.partial(_serve, "demo", config, kw, announce, dashboard_port))


@main.command(short_help="The introspection server alone: demo, mock or a recording.")
@click.option(
    "--source",
    default="demo",
    show_default=True,
    help="What to serve: 'demo' (a live py-libp2p network), 'mock' (a synthetic "
    "node) or the path of a recording file (replayed, §4.10).",
)
@click.option(
    "--speed",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Replay: divide the recorded gaps by this factor.",
)
@click.option("--loop", is_flag=True, help="Replay: start over at the end, time still rising.")
@click.option(
    "--connections",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Mock: connections of the synthetic node.",
)
@click.option(
    "--streams",
    default=4,
    show_default=True,
    type=click.IntRange(min=0),
    help="Mock: streams per connection.",
)
@click.option(
    "--dht-peers",
    default=40,
    show_default=True,
    type=click.IntRange(min=0),
    help="Mock: peers in the DHT routing table.",
)
@click.option(
    "--events-per-second",
    default=20.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Mock: rate of DHT query events.",
)
@click.option(
    "--churn",
    default=0.02,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Mock: fraction of connections replaced per snapshot.",
)
@_limit_options("Replay")
@_server_options
def serve(**kw: Any) -> None:  # fmt: skip
    """Serve introspection data; prints the ws:// URL once it accepts connections."""
    _setup_logging(kw["verbose"])
    source = kw["source"]
    if source not in ("demo", "mock") and not os.path.exists(source):
        looks_like_a_file = os.sep in source or "." in os.path.basename(source)
        raise click.BadParameter(
            f"the file {source} does not exist (--source takes 'demo', 'mock' or the path "
            "of a recording file)" if looks_like_a_file else
            f"unknown source {source!r}: use 'demo', 'mock' or the path of a recording file "
            "(there is no file of that name)",
            param_hint="--source",
        )  # fmt: skip
    config = _config(kw)

    def announce(url: str, what: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        status_log.info("serving %s at %s", what, url)

    _run(functools.partial(_serve, source, config, kw, announce))


async def _serve(
    source_name: str,
    config: ServerConfig,
    kw: dict[str, Any],
    announce: Callable[..., None],
    dashboard_port: int | None = None,
) -> None:
    """Serve the source; with ``dashboard_port``, also a dashboard following the server."""
    from libp2p_introspection.server import IntrospectionServer

    async with _open_source(source_name, config, kw) as (source, what):
        async with trio.open_nursery() as nursery:
            server = IntrospectionServer(source, config)
            with _binding("the introspection endpoint", config.host, config.port,
                          _port_hint("--port")):  # fmt: skip
                await server.bind()
            await nursery.start(server.run)
            if dashboard_port is None:
                announce(server.url, what)
                return
            from libp2p_introspection.dashboard import Dashboard, DashboardConfig

            # The page is served on loopback whatever --host says: it has no token of its own.
            dashboard = Dashboard(
                DashboardConfig(port=dashboard_port, url=server.url, token=config.token)
            )
            with _binding("the dashboard", defaults.DEFAULT_HOST, dashboard_port,
                          _port_hint("--dashboard-port", ", or --no-dashboard")):  # fmt: skip
                await nursery.start(dashboard.run)
            server.dashboard_url = dashboard.url
            announce(server.url, what, dashboard.url)


@asynccontextmanager
async def _open_source(
    name: str, config: ServerConfig, kw: dict[str, Any]
) -> AsyncIterator[tuple[IntrospectionSource, str]]:
    """The source ``name`` names, with a description for the user, for the block's duration."""
    if name == "demo":
        async with _demo_source(config, kw) as opened:
            yield opened
    elif name == "mock":
        from libp2p_introspection.server.sources.synthetic import (
            SyntheticOptions,
            SyntheticSource,
        )

        try:
            options = SyntheticOptions(
                connections=kw["connections"],
                streams=kw["streams"],
                dht_peers=kw["dht_peers"],
                events_per_second=kw["events_per_second"],
                churn=kw["churn"],
                seed=kw["seed"] or 0,
                closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
            )
        except (ValueError, TypeError) as exc:
            raise click.BadParameter(str(exc), param_hint="mock source options") from exc
        yield (
            SyntheticSource(options),
            f"a synthetic node ({options.connections} connections x {options.streams} streams)",
        )
    else:
        from libp2p_introspection.protocol.recording import RecordingError
        from libp2p_introspection.server.sources.replay import ReplaySource

        try:
            replay = ReplaySource(name, speed=kw["speed"], loop=kw["loop"], limits=_limits(kw),
                                  interval_ms=config.interval_ms)  # fmt: skip
        except (RecordingError, OSError) as exc:
            raise click.ClickException(f"cannot replay {name}: {exc}") from exc
        runtime = replay.runtime()
        yield (
            replay,
            f"recording {name} ({runtime.implementation} node {runtime.peer_id}, "
            f"{replay.shape.states} snapshots, speed x{kw['speed']:g}"
            f"{', looping' if kw['loop'] else ''})",
        )


@asynccontextmanager
async def _demo_source(
    config: ServerConfig, kw: dict[str, Any]
) -> AsyncIterator[tuple[IntrospectionSource, str]]:
    from libp2p_introspection.demo import DemoNetwork, DemoNode, DemoOptions
    from libp2p_introspection.introspector import HostIntrospector

    introspectors: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:  # before the node has any connection
        introspectors.append(
            HostIntrospector(
                node.host,
                dht=node.dht,
                closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
            )
        )

    options = DemoOptions(
        nodes=kw["nodes"], churn=not kw["no_churn"], seed=kw["seed"], on_observed_ready=attach
    )
    network = DemoNetwork(options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            peer_id = network.observed.host.get_id()
            yield (
                introspectors[0],
                f"py-libp2p node {peer_id}\n(1 of {kw['nodes']} nodes on 127.0.0.1: ping, echo "
                f"and bulk streams, a Kademlia DHT{'' if kw['no_churn'] else ', churn'})",
            )
            nursery.cancel_scope.cancel()
    finally:
        for introspector in introspectors:
            introspector.detach()


@main.command(short_help="Record a live session into a recording file.")
@click.argument("url", default=defaults.default_url(), required=False, callback=_url)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, writable=True),
    help="Recording file to write (created or truncated).",
)
@click.option(
    "--mode",
    type=click.Choice(["pull", "push"]),
    default="pull",
    show_default=True,
    help="pull: ready/receive loop (§5); push: subscribe to state pushes.",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="Subscribe to events (paused and resumed when writing falls behind).",
)
@click.option(
    "--count", type=click.IntRange(min=1), default=None, help="Stop after this many snapshots."
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=_finite,
    help="Stop after this many seconds.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress display (default: on when stderr is a terminal).",
)
@click.option("--idle-timeout", default=60.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Give up on a server that sends nothing this long, seconds.")  # fmt: skip
@click.option("--token", envvar=defaults.TOKEN_ENV, default=None, show_envvar=True,
              callback=_token, help="The server's shared token, if it requires one.")  # fmt: skip
@_default_url_in_help
def record(url: str, output: str, mode: str, events: bool, count: int | None,
           duration: float | None, progress: bool | None, idle_timeout: float,
           token: str | None) -> None:  # fmt: skip
    """Record the session at URL into a recording file, as the data-dump tool of §5.

    Ends after --count snapshots or --duration seconds, else on Ctrl-C; exits
    non-zero if the server dropped the connection.
    """
    secrets = defaults.token_secrets(url, token)
    _setup_logging(0, secrets)
    from libp2p_introspection.client.progress import progress_reporter
    from libp2p_introspection.client.recorder import Outcome, Recorder

    try:
        recorder = Recorder(url, output, mode=mode, events=events, count=count,
                            duration=duration, idle_timeout=idle_timeout,
                            token=token)  # fmt: skip
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from exc
    show_bar = sys.stderr.isatty() if progress is None else progress

    async def main_task() -> None:
        with progress_reporter(show_bar, count) as report:
            recorder.on_progress = report
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
                await recorder.run()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main_task)
    except BaseException as exc:
        reason = _connection_error(exc)
        if reason is None:
            raise
        recorder.finish()
        message = f"cannot record from {url}: {_unreachable(url, exc)}"
        raise click.ClickException(defaults.redact(message, secrets)) from exc
    result = recorder.result()
    click.echo(defaults.printable(result.summary()), err=True)
    if result.outcome not in (Outcome.COMPLETED, Outcome.STOPPED):
        sys.exit(1)


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


@main.command(short_help="What a recording file holds (or every record as JSON).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option(
    "--dump",
    is_flag=True,
    help="Every record as one JSON line (protobuf's JSON mapping; connection and stream "
    "ids in hex, transport_id as text or hex), for jq and friends.",
)
@_limit_options("Records")
def inspect(file: str, as_json: bool, dump: bool, **kw: Any) -> None:  # fmt: skip
    """Summarize a recording file, in constant memory whatever its size.

    A damaged file (records that fail their checksum or do not parse, a
    truncated tail) is reported on stderr, after everything readable was
    shown. Exit status: 0 the file is sound; 1 it cannot be read as a
    recording; 2 usage error; 3 it is damaged.
    """
    from libp2p_introspection.client import inspect_file
    from libp2p_introspection.protocol.recording import RecordingError

    limits = _limits(kw)
    try:
        if dump:
            report = inspect_file.DumpReport()
            for line in inspect_file.dump(file, limits=limits, report=report):
                click.echo(line)
            found, damaged = report.problems, report.damaged
        else:
            summary = inspect_file.summarize(file, limits=limits)
            click.echo(
                json.dumps(summary, sort_keys=True)
                if as_json
                else defaults.printable(inspect_file.render(summary))
            )
            found, damaged = inspect_file.problems(summary), inspect_file.is_damaged(summary)
    except RecordingError as exc:
        raise click.ClickException(str(exc)) from exc
    if dump or as_json or damaged:  # the text summary already said it on stdout
        for sentence in found:
            click.echo(defaults.printable(f"{file}: {sentence}"), err=True)
    if damaged:
        sys.exit(inspect_file.EXIT_DAMAGED)


@main.command(short_help="A line per snapshot and per event of a live node.")
@click.argument("url", default=defaults.default_url(), required=False, callback=_url)
@click.option(
    "--count",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many snapshots (default: until Ctrl-C).",
)
@click.option(
    "--events/--no-events",
    default=True,
    show_default=True,
    help="Subscribe to events and print them too.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of text.")
@click.option("--token", envvar=defaults.TOKEN_ENV, default=None, show_envvar=True,
              callback=_token, help="The server's shared token, if it requires one.")  # fmt: skip
@_default_url_in_help
def watch(url: str, count: int | None, events: bool, as_json: bool,
          token: str | None) -> None:  # fmt: skip
    """Pull snapshots from URL and print a line for each (and for each event)."""
    secrets = defaults.token_secrets(url, token)
    _setup_logging(0, secrets)
    from libp2p_introspection.client.watch import watch as run_watch

    try:
        trio.run(functools.partial(run_watch, url, count=count, events=events, token=token,
                                   emit=_printer(as_json)))  # fmt: skip
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        if isinstance(exc, SystemExit | click.exceptions.Exit):
            raise
        reason = _connection_error(exc)
        if reason is None:
            raise
        raise click.ClickException(
            defaults.redact(f"cannot watch {url}: {_unreachable(url, exc)}", secrets)
        ) from exc


@main.command(short_help="The live dashboard page of a node, or of a recording.")
@click.argument("url", default=defaults.default_url(), required=False)
@click.option(
    "--host",
    default=defaults.DEFAULT_HOST,
    show_default=True,
    help="Address the page is served on (loopback by default).",
)
@click.option(
    "--port",
    default=defaults.DEFAULT_DASHBOARD_PORT,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port of the page (0 picks a free one).",
)
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Show this recording instead of a live node (the page can still connect).",
)
@click.option(
    "--retention-ms",
    default=120_000,
    show_default=True,
    type=click.IntRange(min=1_000),
    help="How far back the dashboard keeps live snapshots and events, ms.",
)
@click.option(
    "--events/--no-events", default=True, show_default=True, help="Subscribe to the node's events."
)
@click.option("--token", envvar=defaults.TOKEN_ENV, default=None, show_envvar=True,
              callback=_token, help="The server's shared token, if it requires one.")  # fmt: skip
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@_limit_options("Live node and --file")
@_default_url_in_help
def dashboard(url: str, host: str, port: int, file: str | None, retention_ms: int,
              events: bool, token: str | None, verbose: int, **kw: Any) -> None:  # fmt: skip
    """Serve the live dashboard page for the introspection server at URL.

    Prints the page's http:// address on stdout as soon as it is served.
    """
    secrets = defaults.token_secrets(url, token)
    _setup_logging(verbose, secrets)
    from libp2p_introspection.dashboard import Dashboard, DashboardConfig
    from libp2p_introspection.dashboard.app import BadRequest, normalize_url
    from libp2p_introspection.dashboard.recording import RecordingLoadError

    try:
        url = normalize_url(url)
    except BadRequest as exc:
        raise click.BadParameter(defaults.redact(str(exc), secrets), param_hint="URL") from None
    config = DashboardConfig(host=host, port=port, url=url, file=file, retention_ms=retention_ms,
                             events=events, token=token or None,
                             limits=_limits(kw))  # fmt: skip
    from libp2p_introspection.protocol.admission import is_loopback

    if not is_loopback(host):
        log.warning("the dashboard page at %s shows the node to anyone who can reach it "
                    "(it has no token of its own)", host)  # fmt: skip

    async def main_task() -> None:
        service = Dashboard(config)
        async with trio.open_nursery() as nursery:
            with _binding("the dashboard", host, port, _port_hint("--port")):
                await nursery.start(service.run)
            click.echo(service.url)
            where = defaults.redact(url, secrets)
            what = f"recording {file}" if file else f"the introspection server at {where}"
            click.echo(f"Dashboard of {what}; Ctrl-C stops it.")
            sys.stdout.flush()

    try:
        _run(main_task)
    except RecordingLoadError as exc:
        raise click.ClickException(f"cannot show {file}: {exc}") from exc
    except BaseExceptionGroup as group:  # raised from inside the nursery
        errors = group.subgroup(RecordingLoadError)
        if errors is None:
            raise
        raise click.ClickException(f"cannot show {file}: {_first_leaf(errors)}") from group


def _printer(as_json: bool) -> Callable[[dict[str, Any]], None]:
    def emit(line: dict[str, Any]) -> None:
        if as_json:
            click.echo(json.dumps(line, sort_keys=True))
        elif line["kind"] == "state":
            click.echo(
                f"state  {line['instant_ts']}  connections={line['connections']} "
                f"(active {line['active']}) streams={line['streams']} "
                f"in={line['bytes_in']}B out={line['bytes_out']}B "
                f"bw_in={line['bw_in']}B/s bw_out={line['bw_out']}B/s "
                f"dht_peers={line['dht_peers']}"
            )
        elif line["kind"] == "event":
            text = f"event  {line['ts']}  {line['type']}  {line['content']}"
            click.echo(defaults.printable(text))
        else:
            click.echo(f"{line['kind']:6} {json.dumps(line)}")
        sys.stdout.flush()

    return emit


if __name__ == "__main__":  # pragma: no cover
    main()
