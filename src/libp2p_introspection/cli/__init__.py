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
- ``nodes``: the introspection servers registered on this machine (and, with
  ``--lan``, announced on the local network), PROTOCOL.md §6.
"""

from __future__ import annotations

from typing import Any

import click

from libp2p_introspection import __version__
from libp2p_introspection import config as defaults
from libp2p_introspection.cli import clients, nodes, serving


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


for command in (serving.demo, serving.serve, clients.record, clients.inspect, clients.watch,
                clients.dashboard, nodes.nodes):  # fmt: skip
    main.add_command(command)
