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

import trio

from libp2p_introspection.introspector import HostIntrospector
from libp2p_introspection.introspector.application import ApplicationData
from libp2p_introspection.protocol.discovery import INTROSPECTION_PORTS, METRICS_PORTS, PortPlan
from libp2p_introspection.protocol.events import EventSpec, Property
from libp2p_introspection.server import IntrospectionServer, ServerConfig
from libp2p_introspection.server.background import background


class AttachedIntrospection(IntrospectionServer):
    """What :func:`attach_introspection` yields: the running server (``url``, ``port``,
    ... as any :class:`~libp2p_introspection.server.IntrospectionServer`) of a live
    host, and the application's own data on it (PROTOCOL.md §3.1: event types of its
    own, their events, tags on its connections and streams).

    Each method is :class:`~libp2p_introspection.introspector.application.ApplicationData`'s
    (see there for shapes and rules) and raises its ``ApplicationDataError`` (a
    ``ValueError``) on a refused declaration, event or tag, changing nothing.
    """

    def __init__(
        self, introspector: HostIntrospector, config: ServerConfig, *, metrics_url: str | None
    ) -> None:
        super().__init__(introspector, config, metrics_url=metrics_url)
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
    pubsub: Any = None,
    autonat: Any = None,
    config: ServerConfig | None = None,
    metrics_url: str | None = None,
    **options: Any,
) -> AsyncIterator[AttachedIntrospection]:
    """Introspect ``host`` (a py-libp2p ``BasicHost``) and serve it while the block runs.

    ``dht`` is the host's ``KadDHT``, if it runs one; ``pubsub`` its
    ``libp2p.pubsub.pubsub.Pubsub`` (FloodSub or GossipSub), if it runs one: py-libp2p's
    pubsub cannot be found from the host, so without it snapshots carry no
    ``Subsystems.pubsub``; ``autonat`` its ``libp2p.host.autonat.AutoNATService``, if it
    runs one (the snapshots' ``node.reachability`` is then AutoNAT's verdict, else
    ``NOT_RUNNING``). ``config`` or keyword
    ``options`` (the fields of :class:`~libp2p_introspection.server.ServerConfig`:
    ``host`` (the bind address; the libp2p host is the positional argument),
    ``port``, ``interval_ms``, ...) set the server; the default is
    ``ws://127.0.0.1:8845/introspect``, or the first free port of 8850-8869 when
    8845 is taken (another node's), so that several nodes on one machine each
    get one. While it runs the server is in the user's registry (PROTOCOL.md §6:
    ``libp2p-introspect nodes`` lists it, clients without a URL find it), with
    ``metrics_url`` (the node's Prometheus endpoint, if any). Counting starts at
    attach time; on exit the server stops, its entry is removed and every hook on
    the host is removed. Raises ``OSError`` if the port cannot be bound (a port
    given and taken, or every default one).

    Yields an :class:`AttachedIntrospection`: the running server, through which the
    application declares event types, publishes events and tags its connections and
    streams.
    """
    config = replace(config or ServerConfig(), **options)
    introspector = HostIntrospector(
        host,
        dht=dht,
        pubsub=pubsub,
        autonat=autonat,
        closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
    )
    try:
        server = AttachedIntrospection(introspector, config, metrics_url=metrics_url)
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
    a fresh one), the demo's own flags; ``all`` (optional): every other node gets
    an introspection server of its own too, registered like any (§6), on the
    first free ports of 8850-8869 (any free port with ``config.port`` 0), with
    ``config``'s other options; the nodes then never churn (each server follows
    one host for the whole run). ``config`` gives the closed-connection lifetime.
    The network and those servers stop, and every hook is removed, on exit.
    """
    from libp2p_introspection.demo import DemoNetwork, DemoNode, DemoOptions

    introspectors: list[HostIntrospector] = []
    every = bool(settings.get("all"))
    others: list[tuple[DemoNode, HostIntrospector]] = []

    def introspect(node: DemoNode) -> HostIntrospector:
        introspector = HostIntrospector(
            node.host,
            dht=node.dht,
            pubsub=node.pubsub,
            autonat=node.autonat,
            closed_connection_lifetime_ms=config.closed_connection_lifetime_ms,
        )
        introspectors.append(introspector)
        return introspector

    def attach(node: DemoNode) -> None:  # before the node has any connection
        introspect(node)

    def attach_other(node: DemoNode) -> None:  # each other node, before it connects
        others.append((node, introspect(node)))

    nodes, churn = settings["nodes"], not settings["no_churn"] and not every
    options = DemoOptions(
        nodes=nodes, churn=churn, seed=settings["seed"], on_observed_ready=attach,
        on_node_ready=attach_other if every else None,
    )  # fmt: skip
    network = DemoNetwork(options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(network.run)
            peer_id = network.observed.host.get_id()
            description = (
                f"py-libp2p node {peer_id}\n(1 of {nodes} nodes on 127.0.0.1: ping, echo "
                f"and bulk streams, a Kademlia DHT, gossipsub, AutoNAT{', churn' if churn else ''})"
            )
            if every:
                urls = []
                for node, introspector in others:
                    server = await nursery.start(_serve_other, introspector, config)
                    urls.append(f"  {node.name} {node.peer_id}: {server.url}")
                # The URLs are not last: the caller ends the description with a period,
                # and a URL copied with it does not connect.
                description += (
                    "\nEvery other node has its own introspection server:\n"
                    + "\n".join(urls) + "\n(churn is off with --all)"
                )  # fmt: skip
            yield introspectors[0], description
            nursery.cancel_scope.cancel()
    finally:
        for introspector in introspectors:
            introspector.detach()


#: The ports of the other nodes' servers with ``demo --all``: 8845 stays the observed
#: node's.
OTHER_DEMO_PORTS = replace(
    INTROSPECTION_PORTS, what="a demo node's introspection endpoint",
    skip=frozenset({INTROSPECTION_PORTS.first}),
)  # fmt: skip


def other_ports(observed_port: int | None) -> PortPlan:
    """Where the other nodes' servers of ``demo --all`` bind: 8850-8869, never 8845 (the
    observed node's default, taken after them) nor ``observed_port`` (its ``--port``)."""
    skip = {INTROSPECTION_PORTS.first} | ({observed_port} if observed_port else set())
    return replace(OTHER_DEMO_PORTS, skip=frozenset(skip))


async def _serve_other(
    introspector: HostIntrospector,
    config: ServerConfig,
    *,
    task_status: trio.TaskStatus[IntrospectionServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve one more demo node until cancelled: on the first free port of
    8850-8869 but ``config.port`` (any free port if ``config.port`` is 0), with its
    own metrics endpoint when the observed node has one: the first free port of
    8890-8909 but the observed node's (any free port with ``config.port`` 0)."""
    from libp2p_introspection.server.registry import bind_first_free

    metrics_fallback: list[int] = []
    if config.metrics_port is not None:
        if config.port == 0 or config.metrics_port == 0:
            config = replace(config, metrics_port=0)
        else:
            ports = [port for port in range(METRICS_PORTS.fallback_first,
                                            METRICS_PORTS.fallback_last + 1)
                     if port != config.metrics_port]  # fmt: skip
            config = replace(config, metrics_port=ports[0])
            metrics_fallback = ports[1:]

    async def serve(port: int) -> IntrospectionServer:
        server = IntrospectionServer(
            introspector, replace(config, port=port), metrics_fallback=metrics_fallback
        )
        await server.bind()
        return server

    if config.port == 0:
        server = await serve(0)
    else:
        server, _ = await bind_first_free(other_ports(config.port), config.host, serve)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        task_status.started(server)
