"""The serving commands: ``demo`` (the main job) and ``serve``."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from typing import Any

import click
import trio

from libp2p_introspection import config as defaults
from libp2p_introspection.cli.options import (
    cli_option,
    dashboard_port_option,
    demo_options,
    limit_options,
    record_limits,
    server_config,
    server_options,
    verbose_option,
)
from libp2p_introspection.cli.running import (
    binding,
    first_leaf,
    port_hint,
    run,
    self_command,
    setup_logging,
)
from libp2p_introspection.protocol.discovery import METRICS_PORTS
from libp2p_introspection.server.config import ServerConfig
from libp2p_introspection.server.sources import factory

#: Lines a healthy run shows at INFO by default (what is served, where).
status_log = logging.getLogger("libp2p_introspection.cli")


def _mock_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """``serve``'s mock flags: one per shape of the synthetic node, derived from its
    definition (:data:`~libp2p_introspection.server.sources.synthetic.options.SHAPE_OPTIONS`:
    default, help and range; click refuses a value out of range naming the flag)."""
    from libp2p_introspection.server.sources.synthetic.options import SHAPE_OPTIONS

    for option in reversed(SHAPE_OPTIONS):
        func = cli_option(replace(option, help=f"Mock: {option.help}"))(func)
    return func


@click.command(short_help="A live demo network of real py-libp2p nodes (the main job).")
@server_options
@demo_options
@verbose_option
@dashboard_port_option(
    "--dashboard-port",
    "Port of the dashboard page started beside the network (0 picks a free one).",
)
@click.option("--no-dashboard", is_flag=True, help="Do not start the dashboard.")
@click.option("--all", "all", is_flag=True,
              help="Give every demo node its own introspection server (ports 8850-8869; "
                   "all registered: `nodes` lists them). Churn is off with --all.")  # fmt: skip
def demo(**kw: Any) -> None:
    """Start a demo network of real py-libp2p nodes and serve one of them (the main job)."""
    setup_logging(kw["verbose"])
    config = server_config(kw)

    def announce(url: str, what: str, dashboard_url: str | None = None) -> None:
        click.echo(url)
        click.echo(f"\nServing live introspection data of {what}.\n")
        if dashboard_url:
            click.echo(f"Dashboard: {dashboard_url}   (open it in a browser)\n")
        click.echo(
            "What to do next:\n"
            f"  {self_command()} watch {url}     # a line per snapshot, in this terminal\n"
            f"  {self_command()} record {url} -o node.mock   # record it to a file\n"
            "  point libp2p's observer-toolkit UI or any protocol client at the URL above\n"
            "  Ctrl-C stops the network and the server.",
        )
        sys.stdout.flush()

    fallback: Sequence[int] = ()
    if config.metrics_port is None:  # the demo serves metrics: 8847, else 8890-8909 (§6)
        config = replace(config, metrics_port=METRICS_PORTS.first)
        fallback = range(METRICS_PORTS.fallback_first, METRICS_PORTS.fallback_last + 1)
    run(functools.partial(_serve, "demo", config, kw, announce, kw["dashboard_port"],
                          not kw["no_dashboard"], fallback))  # fmt: skip


@click.command(short_help="The introspection server alone: demo, mock or a recording.")
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
@_mock_options
@limit_options("Replay")
@server_options
@demo_options
@verbose_option
def serve(**kw: Any) -> None:
    """Serve introspection data; prints the ws:// URL once it accepts connections."""
    setup_logging(kw["verbose"])
    try:
        factory.check_source_name(kw["source"])
    except factory.UnknownSource as exc:
        raise click.BadParameter(str(exc), param_hint="--source") from None
    config = server_config(kw)

    def announce(url: str, what: str) -> None:
        click.echo(url)
        sys.stdout.flush()
        status_log.info("serving %s at %s", what, url)

    run(functools.partial(_serve, kw["source"], config, kw, announce))


def _open_demo(
    config: ServerConfig, settings: Mapping[str, Any]
) -> AbstractAsyncContextManager[factory.Opened]:
    """The demo source's opener: imported when the demo is chosen, as only it needs
    py-libp2p (``serve --source mock`` and ``--source FILE`` load none of it)."""
    from libp2p_introspection.attach import introspected_demo

    return introspected_demo(config, settings)


async def _serve(
    source_name: str,
    config: ServerConfig,
    kw: dict[str, Any],
    announce: Callable[..., None],
    dashboard_port: int | None = None,
    with_dashboard: bool = False,
    metrics_fallback: Sequence[int] = (),
) -> None:
    """Serve the source; ``with_dashboard``, also a dashboard following the server, on
    ``dashboard_port`` (``None``: 8846, or the first free one of 8870-8889)."""
    from libp2p_introspection.server import IntrospectionServer

    settings = {**kw, "limits": record_limits(kw) if "max_streams" in kw else None}
    try:
        async with factory.open_source(source_name, config, settings,
                                       _open_demo) as (source, what):  # fmt: skip
            async with trio.open_nursery() as nursery:
                server = IntrospectionServer(source, config, metrics_fallback=metrics_fallback)
                with binding("the metrics endpoint", config.host, config.metrics_port or 0,
                             port_hint("--metrics-port")):  # fmt: skip
                    await server.bind_metrics()
                with binding("the introspection endpoint", config.host, config.port,
                             port_hint("--port")):  # fmt: skip
                    await server.bind()
                await nursery.start(server.run)
                if server.metrics_url is not None:
                    status_log.info("Prometheus metrics at %s", server.metrics_url)
                if not with_dashboard:
                    announce(server.url, what)
                    return
                with binding("the dashboard", defaults.DEFAULT_HOST, dashboard_port,
                             port_hint("--dashboard-port", ", or --no-dashboard")):  # fmt: skip
                    dashboard = await start_dashboard(
                        nursery, dashboard_port, url=server.url, token=config.token
                    )
                server.dashboard_url = dashboard.url
                announce(server.url, what, dashboard.url)
    # Raised opening the source only (the server and the dashboard raise none of these).
    except factory.BadSourceOptions as exc:
        raise click.BadParameter(str(exc), param_hint="mock source options") from exc
    except factory.SourceError as exc:
        raise click.ClickException(str(exc)) from exc


async def start_dashboard(
    nursery: trio.Nursery, port: int | None, *, host: str = defaults.DEFAULT_HOST, **settings: Any
) -> Any:
    """Start a dashboard (``DashboardConfig`` ``settings``) in ``nursery`` on ``host:port``;
    ``port`` ``None``: 8846, or the first free one of 8870-8889 (logged at INFO, §6).
    Returns the running ``Dashboard``; ``OSError`` if the port cannot be bound."""
    from libp2p_introspection.dashboard import Dashboard, DashboardConfig
    from libp2p_introspection.protocol.discovery import DASHBOARD_PORTS
    from libp2p_introspection.server.registry import bind_first_free

    async def bind(candidate: int) -> Dashboard:
        dashboard = Dashboard(DashboardConfig(host=host, port=candidate, **settings))
        try:
            await nursery.start(dashboard.run)
        except BaseExceptionGroup as group:  # its nursery's error, grouped
            found = group.subgroup(OSError)
            if found is None:
                raise
            raise first_leaf(found) from group
        return dashboard

    if port is not None:
        return await bind(port)
    dashboard, _ = await bind_first_free(DASHBOARD_PORTS, host, bind)
    return dashboard
