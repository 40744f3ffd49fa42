"""Attach introspection to a running py-libp2p host in a few lines.

Example::

    async with attach_introspection(host, dht=dht, autonat=autonat, port=0) as server:
        print(server.url)          # ws://127.0.0.1:PORT/introspect
        server.declare_event_type("Trade", {"peerId": "PEERID", "amount": "NUMBER"})
        server.publish_event("Trade", {"peerId": peer_id, "amount": 12.5})
        server.tag_connection(peer_id, "exchange")
        await trio.sleep_forever()  # the node goes on; clients connect meanwhile
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.application import ApplicationData
from libp2p_introspection.protocol.events import EventSpec, Property
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.server import background


class AttachedIntrospection(IntrospectionServer):
    """What :func:`attach_introspection` yields: the running server (``url``, ``port``,
    ... as any :class:`~libp2p_introspection.server.IntrospectionServer`) of a live
    host, and the application's own data on it (PROTOCOL.md §3.1: event types of its
    own, their events, tags on its connections and streams).

    Each method is :class:`~libp2p_introspection.introspector.application.ApplicationData`'s
    (see there for shapes and rules) and raises its ``ApplicationDataError`` (a
    ``ValueError``) on a refused declaration, event or tag, changing nothing.
    """

    def __init__(self, introspector: HostIntrospector, config: ServerConfig) -> None:
        super().__init__(introspector, config)
        #: The host's introspector (the data source this server serves).
        self.introspector = introspector

    @property
    def application(self) -> ApplicationData:
        """The application's data on this host (the introspector's)."""
        return self.introspector.application

    def declare_event_type(
        self, name: str, properties: Iterable[Property] | Mapping[str, Any]
    ) -> EventSpec:
        """Declare an event type, e.g. ``declare_event_type("Trade", {"peerId": "PEERID",
        "amount": "NUMBER", "tags": ("STRING", True)})``: in the ``Runtime`` of every
        session from now on (:meth:`ApplicationData.declare_event_type`)."""
        return self.application.declare_event_type(name, properties)

    def publish_event(
        self, name: str, content: Mapping[str, Any], *, ts: int | None = None
    ) -> None:
        """Publish an event of a declared type (``content`` a dict of its properties,
        ``ts`` ms since epoch, default now) to every subscribed client
        (:meth:`ApplicationData.publish_event`)."""
        self.application.publish_event(name, content, ts=ts)

    def tag_connection(self, target: Any, *tags: str) -> int:
        """Tag a ``SwarmConn``, or every open connection to a peer id (``ID`` or base58):
        ``Connection.user_provided_tags``; returns how many
        (:meth:`ApplicationData.tag_connection`)."""
        return self.application.tag_connection(target, *tags)

    def untag_connection(self, target: Any, *tags: str) -> int:
        """Remove tags from connections (:meth:`ApplicationData.untag_connection`)."""
        return self.application.untag_connection(target, *tags)

    def tag_stream(self, stream: Any, *tags: str) -> None:
        """Tag an open ``NetStream``: ``Stream.user_provided_tags``
        (:meth:`ApplicationData.tag_stream`)."""
        self.application.tag_stream(stream, *tags)

    def untag_stream(self, stream: Any, *tags: str) -> None:
        """Remove tags from a stream (:meth:`ApplicationData.untag_stream`)."""
        self.application.untag_stream(stream, *tags)


@asynccontextmanager
async def attach_introspection(
    host: Any,
    /,
    *,
    dht: Any = None,
    autonat: Any = None,
    config: ServerConfig | None = None,
    **options: Any,
) -> AsyncIterator[AttachedIntrospection]:
    """Introspect ``host`` (a py-libp2p ``BasicHost``) and serve it while the block runs.

    ``dht`` is the host's ``KadDHT``, if it runs one; ``autonat`` its
    ``libp2p.host.autonat.AutoNATService``, if it runs one (the snapshots'
    ``node.reachability`` is then AutoNAT's verdict, else ``NOT_RUNNING``). ``config`` or keyword
    ``options`` (the fields of :class:`~libp2p_introspection.server.ServerConfig`:
    ``host`` (the bind address; the libp2p host is the positional argument),
    ``port``, ``interval_ms``, ...) set the server; the default is
    ``ws://127.0.0.1:8845/introspect``. Counting starts at attach time; on exit
    the server stops and every hook on the host is removed. Raises ``OSError``
    if the port cannot be bound.

    Yields an :class:`AttachedIntrospection`: the running server, through which the
    application declares event types, publishes events and tags its connections and
    streams.
    """
    config = replace(config or ServerConfig(), **options)
    introspector = HostIntrospector(
        host,
        dht=dht,
        autonat=autonat,
        closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
    )
    try:
        server = AttachedIntrospection(introspector, config)
        await server.bind()  # here, so that a taken port is a plain OSError
        async with background(server.run) as _:
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
                autonat=node.autonat,
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
                f"and bulk streams, a Kademlia DHT, AutoNAT{', churn' if churn else ''})",
            )
            nursery.cancel_scope.cancel()
    finally:
        for introspector in introspectors:
            introspector.detach()
