"""Attach introspection to a running py-libp2p host in a few lines.

Example::

    async with attach_introspection(host, dht=dht, port=0) as server:
        print(server.url)          # ws://127.0.0.1:PORT/introspect
        await trio.sleep_forever()  # the node goes on; clients connect meanwhile
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
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
    pubsub: Any = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> AsyncIterator[IntrospectionServer]:
    """Introspect ``host`` (a py-libp2p ``BasicHost``) and serve it while the block runs.

    ``dht`` is the host's ``KadDHT``, if it runs one; ``pubsub`` its
    ``libp2p.pubsub.pubsub.Pubsub`` (FloodSub or GossipSub), if it runs one: py-libp2p's
    pubsub cannot be found from the host, so without it snapshots carry no
    ``Subsystems.pubsub``. ``config`` or keyword
    ``options`` (the fields of :class:`~libp2p_introspection.server.ServerConfig`:
    ``host`` (the bind address; the libp2p host is the positional argument),
    ``port``, ``interval_ms``, ...) set the server; the default is
    ``ws://127.0.0.1:8845/introspect``. Counting starts at attach time; on exit
    the server stops and every hook on the host is removed. Raises ``OSError``
    if the port cannot be bound.
    """
    config = replace(config or ServerConfig(), **options)
    introspector = HostIntrospector(
        host,
        dht=dht,
        pubsub=pubsub,
        closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
    )
    try:
        async with open_introspection_server(introspector, config) as server:
            yield server
    finally:
        introspector.detach()


@asynccontextmanager
async def introspected_demo(
    config: ServerConfig, settings: Mapping[str, Any]
) -> AsyncIterator[tuple[HostIntrospector, str]]:
    """A demo network (:class:`~libp2p_introspection.demo.DemoNetwork`) whose observed
    node is introspected, for the block's duration; with a description for the user.

    ``settings``: ``nodes`` (at least 2), ``no_churn`` (bool) and ``seed`` (``None``:
    a fresh one), the demo's own flags; ``config`` gives the closed-connection
    lifetime. The network stops and every hook is removed on exit.
    """
    import trio

    from libp2p_introspection.demo import DemoNetwork, DemoNode, DemoOptions

    introspectors: list[HostIntrospector] = []

    def attach(node: DemoNode) -> None:  # before the node has any connection
        introspectors.append(
            HostIntrospector(
                node.host,
                dht=node.dht,
                pubsub=node.pubsub,
                closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
            )
        )

    nodes, churn = settings["nodes"], not settings["no_churn"]
    network = DemoNetwork(
        DemoOptions(nodes=nodes, churn=churn, seed=settings["seed"], on_observed_ready=attach)
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            peer_id = network.observed.host.get_id()
            yield (
                introspectors[0],
                f"py-libp2p node {peer_id}\n(1 of {nodes} nodes on 127.0.0.1: ping, echo "
                f"and bulk streams, a Kademlia DHT, gossipsub{', churn' if churn else ''})",
            )
            nursery.cancel_scope.cancel()
    finally:
        for introspector in introspectors:
            introspector.detach()
