"""``libp2p-introspect``: the command line (also ``python -m libp2p_introspection``).

Commands:

- ``demo``: the main job. A small network of real py-libp2p nodes on loopback,
  with the introspection server of one of them; prints the URL and what to do next.
- ``serve``: the introspection server alone, for a source (``demo`` by default);
  prints the ``ws://`` URL on stdout as soon as it accepts connections.
- ``watch``: a small protocol client that pulls snapshots and prints one line each.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click
import trio

from libp2p_introspection import __version__
from libp2p_introspection import config as defaults
from libp2p_introspection.server import ServerConfig

log = logging.getLogger("libp2p_introspection")


def _server_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The options every serving command shares, with their documented defaults."""
    options = [
        click.option("--host", default=defaults.DEFAULT_HOST, show_default=True,
                     help="Address to bind (loopback by default)."),
        click.option("--port", default=defaults.DEFAULT_PORT, show_default=True, type=int,
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
        click.option("--queue-bound", default=defaults.DEFAULT_QUEUE_BOUND, show_default=True,
                     type=click.IntRange(min=1),
                     help="Per-session outgoing queue bound for push data, messages."),
        click.option("--write-timeout", default=defaults.DEFAULT_WRITE_TIMEOUT_S,
                     show_default=True, type=click.FloatRange(min=0.1),
                     help="Disconnect (1008) a client that reads nothing this long, seconds."),
        click.option("--nodes", default=4, show_default=True, type=click.IntRange(min=2),
                     help="Demo source: number of py-libp2p nodes."),
        click.option("--churn/--no-churn", default=True, show_default=True,
                     help="Demo source: nodes now and then leave and rejoin."),
        click.option("--seed", default=None, type=int,
                     help="Demo source: seed for its random choices."),
        click.option("-v", "--verbose", count=True, help="More log output (-vv for debug)."),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if verbose < 2:
        logging.getLogger("libp2p").setLevel(max(level, logging.WARNING))
    logging.getLogger("libp2p_introspection").setLevel(level)


def _config(kw: dict[str, Any]) -> ServerConfig:
    return ServerConfig(
        host=kw["host"],
        port=kw["port"],
        interval_ms=kw["interval_ms"],
        closed_connection_lifetime_ms=kw["closed_connection_lifetime_ms"],
        max_retention_ms=kw["max_retention_ms"],
        push_byte_budget=kw["push_byte_budget"],
        queue_bound=kw["queue_bound"],
        write_timeout_s=kw["write_timeout"],
    )


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
        errors = group.subgroup(OSError)
        if errors is None:
            raise
        raise click.ClickException(f"cannot serve: {_first_leaf(errors)}") from group


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="libp2p-introspect")
def main() -> None:
    """Introspection data streaming for py-libp2p nodes."""


@main.command()
@_server_options
def demo(**kw: Any) -> None:
    """Start a demo network of real py-libp2p nodes and serve one of them (the main job)."""
    _setup_logging(kw["verbose"])
    config = _config(kw)

    def announce(url: str, peer_id: str, nodes: int) -> None:
        click.echo(url)
        click.echo(
            f"\nServing live introspection data of py-libp2p node {peer_id}\n"
            f"(1 of {nodes} nodes on 127.0.0.1: ping, echo and bulk streams, a Kademlia DHT"
            f"{', churn' if kw['churn'] else ''}).\n\n"
            "What to do next:\n"
            f"  libp2p-introspect watch {url}     # a line per snapshot, in this terminal\n"
            "  point libp2p's observer-toolkit UI or any protocol client at the URL above\n"
            "  Ctrl-C stops the network and the server.",
        )
        sys.stdout.flush()

    _run(functools.partial(_serve_demo, config, kw, announce))


@main.command()
@click.option("--source", default="demo", show_default=True,
              help="What to serve: 'demo' (a live py-libp2p network).")  # fmt: skip
@_server_options
def serve(source: str, **kw: Any) -> None:
    """Serve introspection data; prints the ws:// URL once it accepts connections."""
    _setup_logging(kw["verbose"])
    if source != "demo":
        raise click.BadParameter(
            f"unknown source {source!r}; available: demo", param_hint="--source"
        )
    config = _config(kw)

    def announce(url: str, peer_id: str, nodes: int) -> None:
        click.echo(url)
        sys.stdout.flush()
        log.warning("serving node %s of a %d-node demo network at %s", peer_id, nodes, url)

    _run(functools.partial(_serve_demo, config, kw, announce))


async def _serve_demo(
    config: ServerConfig, kw: dict[str, Any], announce: Callable[[str, str, int], None]
) -> None:
    from libp2p_introspection.demo import DemoNetwork, DemoNode, DemoOptions
    from libp2p_introspection.introspector import HostIntrospector
    from libp2p_introspection.server import IntrospectionServer

    introspectors: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:
        introspectors.append(
            HostIntrospector(
                node.host,
                dht=node.dht,
                closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
            )
        )

    options = DemoOptions(
        nodes=kw["nodes"], churn=kw["churn"], seed=kw["seed"], on_observed_ready=attach
    )
    network = DemoNetwork(options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            server = IntrospectionServer(introspectors[0], config)
            await nursery.start(server.run)
            announce(server.url, str(network.observed.host.get_id()), kw["nodes"])
    finally:
        for introspector in introspectors:
            introspector.detach()


@main.command()
@click.argument("url", default=defaults.default_url(), required=False)
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
def watch(url: str, count: int | None, events: bool, as_json: bool) -> None:  # fmt: skip
    """Pull snapshots from URL and print a line for each (and for each event)."""
    _setup_logging(0)
    from libp2p_introspection.client.watch import watch as run_watch

    try:
        trio.run(functools.partial(run_watch, url, count=count, events=events,
                                   emit=_printer(as_json)))  # fmt: skip
    except KeyboardInterrupt:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot connect to {url}: {exc}") from exc


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
            click.echo(f"event  {line['ts']}  {line['type']}  {line['content']}")
        else:
            click.echo(f"{line['kind']:6} {json.dumps(line)}")
        sys.stdout.flush()

    return emit


if __name__ == "__main__":  # pragma: no cover
    main()
