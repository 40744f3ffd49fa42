""":class:`SyntheticSource`: the simulated node as an ``IntrospectionSource``.

It puts together the connection simulation (:mod:`.connections`) and the DHT
(:mod:`.dht`) on one clock and one random generator; what is simulated is in
the package docstring.
"""

from __future__ import annotations

import random

import trio

from libp2p_introspection.abc import EventSink, SampledSource, SourceOutlet
from libp2p_introspection.protocol import events, pb
from libp2p_introspection.protocol.clock import ClockMs, wall_clock_ms
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.protocol.framing import assemble_state, encode_varint
from libp2p_introspection.protocol.runtime import build_runtime
from libp2p_introspection.server.sources.synthetic.connections import ConnectionSimulation
from libp2p_introspection.server.sources.synthetic.dht import SimulatedDht
from libp2p_introspection.server.sources.synthetic.ids import random_peer_id
from libp2p_introspection.server.sources.synthetic.node import SimNode
from libp2p_introspection.server.sources.synthetic.options import SyntheticOptions
from libp2p_introspection.server.sources.synthetic.pubsub import SimPubsub
from libp2p_introspection.server.sources.synthetic.resources import SimResources

#: ``Runtime.implementation`` of a synthetic node.
IMPLEMENTATION = "py-libp2p (synthetic)"

_UINT32_MAX = 0xFFFFFFFF
#: Tags of the §3.1 fields: ``State.node`` (100) and ``protocols`` (101);
#: ``Subsystems.pubsub`` (100) and ``resources`` (101); all length-delimited.
_TAG_100 = encode_varint(100 << 3 | 2)
_TAG_101 = encode_varint(101 << 3 | 2)


def _field(tag: bytes, data: bytes) -> bytes:
    return tag + encode_varint(len(data)) + data


class SyntheticSource(SampledSource):
    """A simulated py-libp2p node (see the package docstring for what is simulated).

    The simulation advances only when :meth:`state` is called (connections,
    streams, traffic, DHT table) and while :meth:`run` runs (DHT queries).
    """

    def __init__(self, options: SyntheticOptions | None = None) -> None:
        self.options = options or SyntheticOptions()
        opts = self.options
        self._clock_ms: ClockMs = opts.clock_ms or wall_clock_ms
        rng = random.Random(f"libp2p-introspection/synthetic/{opts.seed}/node")
        query_rng = random.Random(f"libp2p-introspection/synthetic/{opts.seed}/queries")
        specs = (
            events.CONNECTION_EVENTS
            + (events.DHT_EVENTS if opts.dht_peers else ())
            + events.NODE_EVENTS
            + (events.PUBSUB_EVENTS if opts.pubsub_topics else ())
        )
        self._events = EventEmitter(self._clock_ms, specs)
        self.start_ts = max(0, self._clock_ms())
        self._last_instant = self.start_ts
        self.peer_id = random_peer_id(rng)
        #: The gossipsub router, if the node runs one.
        self.pubsub: SimPubsub | None = None
        if opts.pubsub_topics:
            self.pubsub = SimPubsub(
                opts.pubsub_topics, emitter=self._events,
                rng=random.Random(f"libp2p-introspection/synthetic/{opts.seed}/pubsub"),
                max_subscription_events=opts.max_subscription_events_per_snapshot,
            )  # fmt: skip

        def make_node(local_ip: str) -> SimNode:
            return SimNode(
                rng, local_ip, dht=bool(opts.dht_peers), pubsub=self.pubsub is not None,
                emitter=self._events,
            )  # fmt: skip

        #: The connection simulation: its ``retained`` and ``active`` connections, totals,
        #: per-protocol totals, and the node (``State.node``).
        self.connections = ConnectionSimulation(
            opts, rng=rng, start_ts=self.start_ts, emitter=self._events, make_node=make_node,
            pubsub=self.pubsub,
        )  # fmt: skip
        #: The resource manager, if the node runs one.
        self.resources: SimResources | None = None
        if opts.resource_manager:
            self.resources = SimResources(
                random.Random(f"libp2p-introspection/synthetic/{opts.seed}/resources"),
                connections=opts.connections, streams=opts.streams, proto=self.connections.proto,
            )  # fmt: skip
        self._dht = SimulatedDht(
            opts.dht_peers, rng=rng, query_rng=query_rng, start_ts=self.start_ts,
            clock_ms=self._clock_ms, emitter=self._events,
        )  # fmt: skip

    @property
    def suppressed_stream_events(self) -> int:
        """Stream events not emitted because of ``max_stream_events_per_snapshot``."""
        return self.connections.suppressed_stream_events

    @property
    def dht_queries(self) -> int:
        """DHT queries simulated by :meth:`simulate_queries` (events emitted or not)."""
        return self._dht.queries

    def runtime(self) -> pb.Runtime:
        """Static metadata: ``implementation`` "py-libp2p (synthetic)", the installed
        libp2p version, this machine's platform, the simulated peer id (base58),
        and every event type this source emits."""
        return build_runtime(IMPLEMENTATION, self.peer_id, self._events.specs)

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Register the synchronous event sink (``None`` detaches); every event goes there.

        Exceptions raised by the sink are logged and swallowed.
        """
        self._events.set_sink(sink)

    def state(self) -> pb.State:
        """Advance the simulation to now and return one snapshot.

        ``instant_ts`` = the clock's now (ms since epoch); ``start_ts`` = the
        previous call's ``instant_ts`` (creation time for the first call);
        ``snapshot_duration_ms`` = their difference, the window of every
        ``inst_bw`` (bytes per second). Emits the connection and stream events
        of the changes it makes (see the package docstring).
        """
        return pb.State.FromString(self.encoded_state())

    def encoded_state(self) -> bytes:
        """:meth:`state`, serialized: the server's path.

        Each connection keeps its ``pb.Connection`` for its whole life; they
        are serialized one by one and assembled (:func:`assemble_state`)
        rather than copied into a fresh ``State``, which costs several times
        the serialization itself.
        """
        now = max(0, self._clock_ms())
        start = self._last_instant
        window_ms = max(0, now - start)
        sim = self.connections
        pubsub = self.pubsub
        if pubsub is not None:
            pubsub.start_step()
        sim.step(now, start, window_ms)
        sim.node.step(now)
        if pubsub is not None:
            pubsub.step(now, window_ms)
        dht = self._dht
        if dht.enabled:
            dht.evolve(now)
        state = pb.State(
            instant_ts=now, start_ts=start, snapshot_duration_ms=min(window_ms, _UINT32_MAX)
        )
        subsystems = pb.Subsystems()
        if dht.enabled:
            dht.fill(subsystems.dht, now)
        sim.totals.fill(state.traffic, window_ms)
        # The §3.1 fields are numbered above every upstream one: appended in order.
        head = [state.SerializeToString(), _field(_TAG_100, sim.node.encoded())]
        stats = pb.ProtocolStats()
        for protocol in sorted(sim.protocols):
            sim.protocols[protocol].fill(stats, window_ms)
            head.append(_field(_TAG_101, stats.SerializeToString()))
        rest = [subsystems.SerializeToString()]
        if pubsub is not None:
            rest.append(_field(_TAG_100, pubsub.encoded(window_ms)))
        if self.resources is not None:
            self.resources.step()
            encoded = self.resources.encoded(len(sim.active), sim.active_streams)
            rest.append(_field(_TAG_101, encoded))
        self._last_instant = now
        return assemble_state(b"".join(head), sim.encoded_connections(), b"".join(rest))

    async def run(
        self, outlet: SourceOutlet, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The server-wide snapshot clock over this node (:meth:`SampledSource.run`) and,
        beside it, :meth:`simulate_queries`, until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(super().run, outlet)
            await nursery.start(self.simulate_queries)
            task_status.started()

    async def simulate_queries(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Simulate DHT queries at ``events_per_second`` until cancelled.

        Reports started at once. Each query bumps the DHT query counters and
        emits one ``InboundDHTQuery``/``OutboundDHTQuery`` event through the
        sink registered with :meth:`set_event_sink` (all of this source's events
        take the one path, in order). Queries are evenly spaced on trio's clock,
        ``1 / events_per_second`` s apart; after a stall the missed ones are
        caught up, but never more than one second's worth. Returns at once when
        ``events_per_second`` is 0 or the node has no DHT.
        """
        task_status.started()
        rate = self.options.events_per_second
        if rate <= 0 or not self._dht.enabled:
            return
        interval = 1.0 / rate
        deadline = trio.current_time()
        while True:
            deadline += interval
            now = trio.current_time()
            if now - deadline > 1.0:
                deadline = now
            await trio.sleep_until(deadline)
            self._dht.simulate_query()
