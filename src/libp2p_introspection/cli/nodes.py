"""Discovery on the command line (PROTOCOL.md §6): ``nodes``, and the server a client
without a URL connects to."""

from __future__ import annotations

import json
import sys
import time

import click

from libp2p_introspection import config as defaults
from libp2p_introspection.client import discovery
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


@click.command(short_help="The introspection servers running here (and on the LAN).")
@click.option("--json", "as_json", is_flag=True,
              help="A JSON array of the servers instead of a table.")
@click.option("--lan", is_flag=True,
              help="Also browse the local network over mDNS for servers started with "
                   "--announce.")
@click.option("--lan-timeout", default=3.0, show_default=True,
              type=click.FloatRange(min=0.1, max=60),
              help="How long --lan listens for announcements, seconds.")  # fmt: skip
def nodes(as_json: bool, lan: bool, lan_timeout: float) -> None:
    """List the introspection servers of this user's registry on this machine (and,
    with --lan, those announced on the local network): URL, peer id,
    implementation, pid, age, whether a token is required, metrics URL.

    Entries of processes that are gone are removed as they are found; a
    registry directory that is not yours with mode 0700 is refused, with why.
    """
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
