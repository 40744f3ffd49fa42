"""Attach introspection to a running py-libp2p host in a few lines.

Example::

    async with attach_introspection(host, dht=dht, port=0) as server:
        print(server.url)          # ws://127.0.0.1:PORT/introspect
        await trio.sleep_forever()  # the node goes on; clients connect meanwhile
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.server import IntrospectionServer, ServerConfig, open_introspection_server


@asynccontextmanager
async def attach_introspection(
    host: Any,
    /,
    *,
    dht: Any = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> AsyncIterator[IntrospectionServer]:
    """Introspect ``host`` (a py-libp2p ``BasicHost``) and serve it while the block runs.

    ``dht`` is the host's ``KadDHT``, if it runs one. ``config`` or keyword
    ``options`` (the fields of :class:`~libp2p_introspection.server.ServerConfig`:
    ``host`` (the bind address; the libp2p host is the positional argument),
    ``port``, ``interval_ms``, ...) set the server; the default is
    ``ws://127.0.0.1:8845/introspect``. Counting starts at attach time; on exit
    the server stops and every hook on the host is removed. Raises ``OSError``
    if the port cannot be bound.
    """
    config = replace(config or ServerConfig(), **options)
    introspector = HostIntrospector(
        host, dht=dht, closed_connection_lifetime_ms=config.closed_connection_lifetime_ms
    )
    try:
        async with open_introspection_server(introspector, config) as server:
            yield server
    finally:
        introspector.detach()
