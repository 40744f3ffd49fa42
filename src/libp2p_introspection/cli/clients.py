"""The client commands: ``record``, ``inspect``, ``watch`` and ``dashboard``."""

from __future__ import annotations

import functools
import json
import logging
import sys
from typing import Any

import click
import trio

from libp2p_introspection import config as defaults
from libp2p_introspection.cli.nodes import server_url
from libp2p_introspection.cli.options import (
    check_finite,
    check_url,
    client_token_option,
    dashboard_port_option,
    default_url_in_help,
    discovered_url_in_help,
    limit_options,
    record_limits,
    verbose_option,
)
from libp2p_introspection.cli.running import (
    binding,
    connection_error,
    first_leaf,
    port_hint,
    run,
    setup_logging,
    stop_on_signal,
    unreachable,
)
from libp2p_introspection.protocol.admission import is_loopback

log = logging.getLogger("libp2p_introspection")


@click.command(short_help="Record a live session into a recording file.")
@click.argument("url", default=None, required=False, callback=check_url)
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
    callback=check_finite,
    help="Stop after this many seconds.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress display (default: on when stderr is a terminal).",
)
@click.option("--idle-timeout", default=defaults.DEFAULT_IDLE_TIMEOUT_S, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Give up on a server that sends nothing this long, seconds.")  # fmt: skip
@client_token_option
@discovered_url_in_help
def record(url: str | None, output: str, mode: str, events: bool, count: int | None,
           duration: float | None, progress: bool | None, idle_timeout: float,
           token: str | None) -> None:  # fmt: skip
    """Record the session at URL into a recording file, as the data-dump tool of §5.

    Ends after --count snapshots or --duration seconds, else on Ctrl-C; exits
    non-zero if the server dropped the connection.
    """
    url = server_url(url)
    secrets = defaults.token_secrets(url, token)
    setup_logging(0, secrets)
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
                nursery.start_soon(stop_on_signal, nursery.cancel_scope)
                await recorder.run()
                nursery.cancel_scope.cancel()

    try:
        trio.run(main_task)
    except BaseException as exc:
        reason = connection_error(exc)
        if reason is None:
            raise
        recorder.finish()
        message = f"cannot record from {url}: {unreachable(url, exc)}"
        raise click.ClickException(defaults.redact(message, secrets)) from exc
    result = recorder.result()
    click.echo(defaults.printable(result.summary()), err=True)
    if result.outcome not in (Outcome.COMPLETED, Outcome.STOPPED):
        sys.exit(1)


@click.command(short_help="What a recording file holds (or every record as JSON).")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of text.")
@click.option(
    "--dump",
    is_flag=True,
    help="Every record as one JSON line (protobuf's JSON mapping; connection and stream "
    "ids in hex, transport_id as text or hex), for jq and friends.",
)
@limit_options("Records")
def inspect(file: str, as_json: bool, dump: bool, **kw: Any) -> None:  # fmt: skip
    """Summarize a recording file, in constant memory whatever its size.

    A damaged file (records that fail their checksum or do not parse, a
    truncated tail) is reported on stderr, after everything readable was
    shown. Exit status: 0 the file is sound; 1 it cannot be read as a
    recording; 2 usage error; 3 it is damaged.
    """
    from libp2p_introspection.client import inspect_file
    from libp2p_introspection.protocol.recording import RecordingError

    limits = record_limits(kw)
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
                else inspect_file.render(summary)  # escapes the file's strings itself
            )
            found, damaged = inspect_file.problems(summary), inspect_file.is_damaged(summary)
    except RecordingError as exc:
        raise click.ClickException(str(exc)) from exc
    if dump or as_json or damaged:  # the text summary already said it on stdout
        for sentence in found:
            click.echo(defaults.printable(f"{file}: {sentence}"), err=True)
    if damaged:
        sys.exit(inspect_file.EXIT_DAMAGED)


@click.command(short_help="A line per snapshot and per event of a live node.")
@click.argument("url", default=None, required=False, callback=check_url)
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
@client_token_option
@discovered_url_in_help
def watch(url: str | None, count: int | None, events: bool, as_json: bool,
          token: str | None) -> None:  # fmt: skip
    """Pull snapshots from URL and print a line for each (and for each event)."""
    url = server_url(url)
    secrets = defaults.token_secrets(url, token)
    setup_logging(0, secrets)
    from libp2p_introspection.client.watch import printer
    from libp2p_introspection.client.watch import watch as run_watch

    try:
        trio.run(functools.partial(run_watch, url, count=count, events=events, token=token,
                                   emit=printer(as_json)))  # fmt: skip
    except KeyboardInterrupt:
        pass
    except BaseException as exc:
        if isinstance(exc, SystemExit | click.exceptions.Exit):
            raise
        reason = connection_error(exc)
        if reason is None:
            raise
        raise click.ClickException(
            defaults.redact(f"cannot watch {url}: {unreachable(url, exc)}", secrets)
        ) from exc


@click.command(short_help="The live dashboard page of a node, or of a recording.")
@click.argument("url", default=defaults.default_url(), required=False)
@click.option(
    "--host",
    default=defaults.DEFAULT_HOST,
    show_default=True,
    help="Address the page is served on (loopback by default).",
)
@dashboard_port_option("--port", "Port of the page (0 picks a free one).")
@click.option(
    "--file",
    "file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Show this recording instead of a live node (the page can still connect).",
)
@click.option(
    "--retention-ms",
    default=defaults.DEFAULT_MAX_RETENTION_MS,
    show_default=True,
    type=click.IntRange(min=1_000),
    help="How far back the dashboard keeps live snapshots and events, ms.",
)
@click.option(
    "--events/--no-events", default=True, show_default=True, help="Subscribe to the node's events."
)
@click.option("--lan", is_flag=True,
              help="The Nodes view also lists servers announced on the local network (mDNS).")
@client_token_option
@verbose_option
@limit_options("Live node and --file")
@default_url_in_help
def dashboard(url: str, host: str, port: int, file: str | None, retention_ms: int, events: bool,
              lan: bool, token: str | None, verbose: int, **kw: Any) -> None:  # fmt: skip
    """Serve the live dashboard page for the introspection server at URL.

    Prints the page's http:// address on stdout as soon as it is served.
    """
    secrets = defaults.token_secrets(url, token)
    setup_logging(verbose, secrets)
    from libp2p_introspection.cli.serving import start_dashboard
    from libp2p_introspection.dashboard.bodies import BadRequest, normalize_url
    from libp2p_introspection.dashboard.recording import RecordingLoadError

    try:
        url = normalize_url(url)
    except BadRequest as exc:
        raise click.BadParameter(defaults.redact(str(exc), secrets), param_hint="URL") from None
    settings = dict(url=url, file=file, retention_ms=retention_ms, events=events, lan=lan,
                    token=token or None, limits=record_limits(kw))  # fmt: skip
    if not is_loopback(host):
        log.warning("the dashboard page at %s shows the node to anyone who can reach it "
                    "(it has no token of its own)", host)  # fmt: skip

    async def main_task() -> None:
        async with trio.open_nursery() as nursery:
            with binding("the dashboard", host, port, port_hint("--port")):
                service = await start_dashboard(nursery, port, host=host, **settings)
            click.echo(service.url)
            where = defaults.redact(url, secrets)
            what = f"recording {file}" if file else f"the introspection server at {where}"
            click.echo(f"Dashboard of {what}; Ctrl-C stops it.")
            sys.stdout.flush()

    from libp2p_introspection.dashboard.convert import tune_collector

    tune_collector()  # a process of its own: its collector suits what it follows
    try:
        run(main_task)
    except RecordingLoadError as exc:
        raise click.ClickException(f"cannot show {file}: {exc}") from exc
    except BaseExceptionGroup as group:  # raised from inside the nursery
        errors = group.subgroup(RecordingLoadError)
        if errors is None:
            raise
        raise click.ClickException(f"cannot show {file}: {first_leaf(errors)}") from group
