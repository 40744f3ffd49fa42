"""Discovery on the command line (PROTOCOL.md §6): ``nodes``, and the server a client
without a URL connects to."""

from __future__ import annotations

import json
import sys
import time

import click

from libp2p_introspection import config as defaults
from libp2p_introspection.client import discovery, prometheus_sd
from libp2p_introspection.protocol.discovery import ServerEntry


def _warn(problems: list[str]) -> None:
    for problem in problems:
        click.echo(defaults.printable(f"warning: {problem}"), err=True)


def _ask(entries: list[ServerEntry]) -> ServerEntry:
    """Name the servers on stderr and ask for one (a number) on the terminal."""
    click.echo(f"{len(entries)} introspection servers are running on this machine:", err=True)
    for number, entry in enumerate(entries, 1):
        click.echo(f"  {number}) {discovery.describe(entry)}", err=True)
    choice = click.prompt("Which one", type=click.IntRange(1, len(entries)), err=True)
    return entries[choice - 1]


def on_a_terminal() -> bool:
    """Whether the user can be asked: stdin and stderr are terminals."""
    return sys.stdin.isatty() and sys.stderr.isatty()


def server_url(url: str | None) -> str:
    """The URL a client command connects to: ``url`` if given; else the one server in
    the registry, the one the user picks among several (on a terminal; a usage error
    listing them otherwise), or the default ``ws://127.0.0.1:8845/introspect``."""
    if url is not None:
        return url
    found = discovery.read_registry()
    _warn(found.problems)
    try:
        entry = discovery.choose(found.entries, _ask if on_a_terminal() else None)
    except discovery.NoChoice as exc:
        raise click.UsageError(defaults.printable(str(exc))) from None
    if entry is None:
        return defaults.default_url()
    click.echo(defaults.printable(f"connecting to {entry.url} (peer {entry.peer_id})"), err=True)
    return entry.url


def _as_json(entry: ServerEntry, now_ms: int) -> dict[str, object]:
    return {
        "url": entry.url,
        "peer_id": entry.peer_id,
        "implementation": entry.implementation,
        "pid": entry.pid,
        "started_ms": entry.started_ms,
        "age_s": round(entry.age_s(now_ms), 3),
        "token_required": entry.token_required,
        "metrics_url": entry.metrics_url,
        "found_in": entry.origin,
    }


#: How often ``nodes --prometheus-sd`` re-reads the registry, seconds.
SD_POLL_S = 2.0


def _follow_for_prometheus(path: str, once: bool) -> None:
    """Write the Prometheus SD file of the registry's metrics endpoints to ``path``;
    unless ``once``, re-read the registry every :data:`SD_POLL_S` s and rewrite the
    file whenever its content would change, until Ctrl-C (the file stays)."""
    written: bytes | None = None
    warned: list[str] = []
    try:
        while True:
            found = discovery.read_registry()
            if found.problems != warned:
                _warn(found.problems)
                warned = found.problems
            content = prometheus_sd.render(found.entries)
            if content != written:
                try:
                    prometheus_sd.write_atomically(path, content)
                except OSError as exc:
                    raise click.ClickException(
                        defaults.printable(f"cannot write {path}: {exc.strerror or exc}")
                    ) from None
                written = content
                count = sum(1 for e in found.entries if prometheus_sd.target_group(e))
                click.echo(defaults.printable(f"wrote {count} metrics targets to {path}"),
                           err=True)  # fmt: skip
            if once:
                return
            time.sleep(SD_POLL_S)
    except KeyboardInterrupt:
        return


@click.command(short_help="The introspection servers running here (and on the LAN).")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array of the servers instead of a table.")
@click.option("--lan", is_flag=True,
              help="Also browse the local network over mDNS for servers started with "
                   "--announce.")
@click.option("--lan-timeout", default=3.0, show_default=True,
              type=click.FloatRange(min=0.1, max=60),
              help="How long --lan listens for announcements, seconds.")  # fmt: skip
@click.option("--prometheus-sd", "sd_file", metavar="FILE",
              type=click.Path(dir_okay=False, writable=True),
              help="Write a Prometheus file_sd_configs JSON file of the registered "
                   "servers' metrics endpoints (labels peer_id, implementation, "
                   "token_required) and rewrite it, atomically, whenever they change "
                   "(registry re-read every 2 s, until Ctrl-C). No token is ever "
                   "written: for servers with token_required=\"true\" give the scrape "
                   "job Prometheus's `authorization` setting.")
@click.option("--once", is_flag=True,
              help="With --prometheus-sd: write the file once and exit.")  # fmt: skip
def nodes(
    as_json: bool, lan: bool, lan_timeout: float, sd_file: str | None, once: bool
) -> None:
    """List the introspection servers of this user's registry on this machine (and,
    with --lan, those announced on the local network): URL, peer id,
    implementation, pid, age, whether a token is required, metrics URL.

    Entries of processes that are gone are removed as they are found; a
    registry directory that is not yours with mode 0700 is refused, with why.

    With --prometheus-sd FILE it keeps FILE, a Prometheus file-based service
    discovery file of this machine's metrics endpoints, current instead.
    """
    if sd_file is not None:
        if lan or as_json:
            raise click.UsageError("--prometheus-sd follows this machine's registry: "
                                   "it does not combine with --lan or --json")  # fmt: skip
        _follow_for_prometheus(sd_file, once)
        return
    if once:
        raise click.UsageError("--once goes with --prometheus-sd FILE")
    found = discovery.read_registry()
    if lan:
        seen = discovery.browse_lan(lan_timeout)
        found.problems += seen.problems
        local = {(entry.peer_id, entry.started_ms) for entry in found.entries}
        found.entries += [e for e in seen.entries if (e.peer_id, e.started_ms) not in local]
    _warn(found.problems)
    now_ms = int(time.time() * 1000)
    if as_json:
        click.echo(json.dumps([_as_json(entry, now_ms) for entry in found.entries], indent=2))
        return
    if not found.entries:
        click.echo(
            "No introspection server found"
            + (" here or on the local network." if lan else " on this machine.")
            + f" Clients without a URL connect to {defaults.default_url()}."
        )
        return
    rows = [("URL", "PEER ID", "IMPL", "PID", "AGE", "TOKEN", "METRICS")]
    for entry in found.entries:
        rows.append((
            entry.url, entry.peer_id, entry.implementation,
            str(entry.pid) if entry.pid is not None else "lan",
            discovery.format_age(entry.age_s(now_ms)),
            "required" if entry.token_required else "no",
            entry.metrics_url or "-",
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        line = "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        click.echo(defaults.printable(line.rstrip()))
