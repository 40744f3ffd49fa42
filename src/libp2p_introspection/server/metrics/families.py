"""The metric families of the export, rendered from a :class:`~.view.MetricsView`.

Every family is listed, with its labels, units and source, in README.md
("Prometheus") and docs in :data:`FAMILIES`' help strings. go-libp2p's names and
labels are used wherever the same thing is measured (``libp2p_swarm_*``,
``libp2p_identify_*``, ``libp2p_rcmgr_*``), so go-libp2p's Grafana dashboards
read a py-libp2p node unchanged; the rest are ours, named in the same style:
``libp2p_host_*``, ``libp2p_protocol_*``, ``libp2p_dht_*``, ``libp2p_pubsub_*``,
``libp2p_peer_*`` (only with the per-peer option) and ``libp2p_introspection_*``
(the introspection server's own health).

:class:`ViewCollector` is a ``prometheus_client`` collector of our own, registered
in a registry of our own (never the process-wide default one, which py-libp2p's
own metrics use).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector, CollectorRegistry

from libp2p_introspection.protocol import pb
from libp2p_introspection.server.metrics import labels as lbl
from libp2p_introspection.server.metrics.view import CONN_LABEL_NAMES, Histogram, MetricsView


@dataclass(frozen=True, slots=True)
class ServerHealth:
    """The introspection server's own counters at one moment (its health families).

    ``sessions``: open now; ``sessions_total``: ever accepted; ``refused_total``,
    ``shed_total``: upgrades refused, connections evicted in their handshake;
    ``dropped_total``, ``notices_total``: push items dropped and notices sent, over
    every session; ``bytes_sent_total``: bytes written to clients, bytes;
    ``snapshot_builds``/``snapshot_build_seconds``: snapshots the source built and
    the time they took, seconds (0 for a source that builds none, a replay);
    ``snapshot_errors_total``: snapshots the source failed to build.
    """

    sessions: int = 0
    sessions_total: int = 0
    refused_total: int = 0
    shed_total: int = 0
    dropped_total: int = 0
    notices_total: int = 0
    bytes_sent_total: int = 0
    snapshot_builds: int = 0
    snapshot_build_seconds: float = 0.0
    snapshot_errors_total: int = 0
    snapshots_total: int = 0
    events_total: int = 0


def _histogram(
    name: str,
    doc: str,
    names: Sequence[str],
    histogram: Histogram,
    zero: Iterable[tuple[str, ...]] = (),
) -> HistogramMetricFamily:
    """``histogram`` as a family; ``zero``: label values shown with no observation yet
    (every bucket 0), so that the first one is an increase ``rate()`` sees."""
    family = HistogramMetricFamily(name, doc, labels=list(names))
    edges = [*(f"{bound:.6g}" for bound in histogram.bounds), "+Inf"]
    series = dict.fromkeys(zero, ([0] * len(edges), [0.0])) | histogram.series
    for values, (counts, total) in sorted(series.items()):
        cumulative, buckets = 0, []
        for edge, count in zip(edges, counts, strict=True):
            cumulative += count
            buckets.append((edge, float(cumulative)))
        family.add_metric(list(values), buckets, total[0])
    return family


def _counter(name: str, doc: str, names: Sequence[str], values: Counter) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(names))
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], float(value))
    return family


def _gauge(name: str, doc: str, names: Sequence[str], values: dict) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(names))
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], float(value))
    return family


#: The ``dir`` values of a connection whose direction is known.
_DIRECTIONS = ("inbound", "outbound")


def _dir(role: int) -> str:
    return "outbound" if role == pb.INITIATOR else "inbound"


def _status_name(status: int) -> str:
    return pb.Status.Name(status).lower() if status in pb.Status.values() else "unknown"


class ViewCollector(Collector):
    """Renders ``view`` (and ``health()``, if given) as metric families on each scrape.

    ``runtime``: the source's ``Runtime`` (``libp2p_host_info``'s labels).
    """

    def __init__(
        self,
        view: MetricsView,
        runtime: pb.Runtime,
        health: Callable[[], ServerHealth] | None = None,
    ) -> None:
        self.view = view
        self.runtime = runtime
        self.health = health

    def collect(self) -> Iterator[Metric]:
        view = self.view
        yield from self._snapshot_families(view)
        yield from self._swarm(view)
        yield from self._identify(view)
        state = view.state
        if state is not None:
            yield from self._host(state)
            yield from self._protocols(state)
            if state.subsystems.HasField("dht"):
                yield from self._dht(state.subsystems.dht)
            if state.subsystems.HasField("pubsub"):
                yield from self._pubsub(state.subsystems.pubsub)
            if state.subsystems.HasField("resources"):
                yield from self._rcmgr(state.subsystems.resources)
            if view.per_peer:
                yield from self._peers(state)
        yield from _histogram_family(
            "libp2p_dht_query_duration_seconds",
            "Kademlia RPCs by direction, message type and result, and how long each took "
            "(seconds), from the InboundDHTQuery and OutboundDHTQuery events.",
            ("dir", "message_type", "result"), view.dht_queries,
        )  # fmt: skip
        if self.health is not None:
            yield from self._health(self.health())

    # ------------------------------------------------------------------ families

    def _snapshot_families(self, view: MetricsView) -> Iterator[Metric]:
        runtime = self.runtime
        info = GaugeMetricFamily(
            "libp2p_host_info",
            "Always 1: the node's implementation, version, platform and peer id (Runtime).",
            labels=["implementation", "version", "platform", "peer_id"],
        )
        info.add_metric(
            [lbl.clip(runtime.implementation), lbl.clip(runtime.version),
             lbl.clip(runtime.platform), lbl.clip(runtime.peer_id)], 1.0,
        )  # fmt: skip
        yield info
        if view.state is None:
            return
        yield GaugeMetricFamily(
            "libp2p_introspection_snapshot_instant_ts_ms",
            "State.instant_ts of the snapshot this exposition agrees with, ms since epoch: "
            "its gauges are that snapshot's, its counters count the events published "
            "before it.",
            value=float(view.state.instant_ts),
        )
        yield GaugeMetricFamily(
            "libp2p_introspection_snapshot_number",
            "Number of that snapshot in the server-wide sequence (PROTOCOL.md 4.1).",
            value=float(view.snapshot_number),
        )

    def _swarm(self, view: MetricsView) -> Iterator[Metric]:
        # Both families carry every label set either has (0 where nothing happened), and
        # early_muxer="true" beside each "false" one (py-libp2p never negotiates the muxer
        # early: 0 is the truth): go's dashboards subtract one from the other, and a
        # series missing on one side would hide the other's.
        # Likewise each label set in both directions (a node that only accepted
        # connections has opened 0 outbound ones: go's "Outgoing" panels say 0, not "no
        # data"), and a duration histogram for each from its first connection on.
        real = set(view.opened) | set(view.closed)
        real |= {(other, *key[1:]) for key in real if key[0] in _DIRECTIONS
                 for other in _DIRECTIONS}  # fmt: skip
        keys = real | {(*key[:4], "true", key[5]) for key in real}
        yield _counter(
            "libp2p_swarm_connections_opened",
            "Connections opened (go-libp2p's name and labels), from ConnectionOpened events "
            "and snapshots.",
            CONN_LABEL_NAMES, Counter({key: view.opened[key] for key in keys}),
        )  # fmt: skip
        yield _counter(
            "libp2p_swarm_connections_closed",
            "Connections closed (go-libp2p's name and labels), from ConnectionClosed events "
            "and snapshots.",
            CONN_LABEL_NAMES, Counter({key: view.closed[key] for key in keys}),
        )  # fmt: skip
        yield _histogram(
            "libp2p_swarm_connection_duration_seconds",
            "How long closed connections lasted, seconds (Connection.timeline close_ts - "
            "open_ts).",
            CONN_LABEL_NAMES, view.duration, zero=real,
        )  # fmt: skip
        yield _histogram(
            "libp2p_swarm_handshake_latency_seconds",
            "Security and muxer negotiation of each connection, seconds (Connection.timeline "
            "upgraded_ts - open_ts).",
            CONN_LABEL_NAMES[1:], view.handshake,
        )  # fmt: skip
        yield _counter(
            "libp2p_swarm_key_types",
            "Connections opened by the key type of the remote peer id (Ed25519, Secp256k1; "
            "'unknown' for a hashed id, an RSA or ECDSA key).",
            ("dir", "key_type"), view.key_types,
        )  # fmt: skip

    def _identify(self, view: MetricsView) -> Iterator[Metric]:
        yield _counter(
            "libp2p_identify_identify",
            "Identify exchanges: 'inbound' answered, 'outbound' asked for (StreamOpened "
            "events of /ipfs/id/1.0.0).",
            ("dir",), view.identify,
        )  # fmt: skip
        yield _counter(
            "libp2p_identify_identify_push",
            "Identify pushes: 'outbound' sent, 'inbound' received (StreamOpened events of "
            "/ipfs/id/push/1.0.0).",
            ("dir",), view.identify_push,
        )  # fmt: skip
        yield _counter(
            "libp2p_identify_conn_push_support",
            "Identified connections by whether the peer supports identify push "
            "(Connection.peer.protocols).",
            ("support",), view.push_support,
        )  # fmt: skip
        yield _histogram(
            "libp2p_identify_protocols_received",
            "Protocols each identified peer announced (Connection.peer.protocols).",
            (), view.protocols_received,
        )  # fmt: skip
        yield _histogram(
            "libp2p_identify_addrs_received",
            "Listen addresses each identified peer announced (Connection.peer.listen_addrs).",
            (), view.addrs_received,
        )  # fmt: skip
        state = view.state
        if state is not None and state.HasField("node"):
            yield GaugeMetricFamily(
                "libp2p_identify_protocols_count",
                "Protocols this node announces (State.node.protocols).",
                value=float(len(state.node.protocols)),
            )
            yield GaugeMetricFamily(
                "libp2p_identify_addrs_count",
                "Addresses this node announces (State.node.listen_addrs).",
                value=float(len(state.node.listen_addrs)),
            )

    def _host(self, state: pb.State) -> Iterator[Metric]:
        conns: Counter[tuple[str, str]] = Counter()
        streams: Counter[str] = Counter()
        for conn in state.subsystems.connections:
            status = _status_name(conn.status)
            conns[(_dir(conn.role), status)] += 1
            for stream in conn.streams.streams:
                if stream.status in (pb.ACTIVE, pb.OPENING, pb.CLOSING):
                    streams[_dir(stream.role)] += 1
        yield _gauge(
            "libp2p_host_connections",
            "Connections in the snapshot by direction and status (closed ones stay for the "
            "closed-connection lifetime).",
            ("dir", "status"), dict(conns),
        )  # fmt: skip
        yield _gauge(
            "libp2p_host_streams", "Streams open in the snapshot, by direction.",
            ("dir",), dict(streams),
        )  # fmt: skip
        traffic = state.traffic
        yield _counter(
            "libp2p_host_bytes",
            "Bytes received ('inbound') and sent ('outbound') by the node since the "
            "introspector started (State.traffic cum_bytes).",
            ("dir",),
            Counter({"inbound": traffic.traffic_in.cum_bytes,
                     "outbound": traffic.traffic_out.cum_bytes}),
        )  # fmt: skip
        yield _gauge(
            "libp2p_host_bandwidth_bytes_per_second",
            "The node's bandwidth over the snapshot window, bytes/s (State.traffic inst_bw).",
            ("dir",),
            {"inbound": traffic.traffic_in.inst_bw, "outbound": traffic.traffic_out.inst_bw},
        )  # fmt: skip
        if state.HasField("node"):
            node = state.node
            yield GaugeMetricFamily(
                "libp2p_host_listen_addrs", "Addresses the transports are bound to now.",
                value=float(len(node.listen_addrs)),
            )  # fmt: skip
            reach = GaugeMetricFamily(
                "libp2p_host_reachability",
                "1 for the node's reachability as AutoNAT says (State.node.reachability).",
                labels=["reachability"],
            )
            name = (
                pb.NodeInfo.Reachability.Name(node.reachability).lower()
                if (node.reachability in pb.NodeInfo.Reachability.values())
                else "unknown"
            )
            reach.add_metric([name], 1.0)
            yield reach

    def _protocols(self, state: pb.State) -> Iterator[Metric]:
        if not state.protocols:
            return
        label = self.view.protocol_label
        traffic: Counter[tuple[str, str]] = Counter()
        active: Counter[str] = Counter()
        opened: Counter[str] = Counter()
        for stats in state.protocols:
            protocol = label(stats.protocol)
            traffic[(protocol, "inbound")] += stats.traffic.traffic_in.cum_bytes
            traffic[(protocol, "outbound")] += stats.traffic.traffic_out.cum_bytes
            active[protocol] += stats.active_streams
            opened[protocol] += stats.streams_opened
        yield _counter(
            "libp2p_protocol_bytes",
            "Stream payload bytes per protocol since attach, closed streams included "
            "(State.protocols traffic cum_bytes; '' = never negotiated).",
            ("protocol", "dir"), traffic,
        )  # fmt: skip
        yield _gauge(
            "libp2p_protocol_streams", "Streams of each protocol open now.",
            ("protocol",), dict(active),
        )  # fmt: skip
        yield _counter(
            "libp2p_protocol_streams_opened", "Streams of each protocol opened since attach.",
            ("protocol",), opened,
        )  # fmt: skip

    def _dht(self, dht: pb.DHT) -> Iterator[Metric]:
        peers: Counter[str] = Counter()
        for bucket in dht.buckets:
            for peer in bucket.peers:
                name = (
                    pb.DHT.PeerInDHT.Status.Name(peer.status).lower()
                    if (peer.status in pb.DHT.PeerInDHT.Status.values())
                    else "unknown"
                )
                peers[name] += 1
        yield _gauge(
            "libp2p_dht_routing_table_peers", "Peers in the Kademlia routing table by status.",
            ("status",), dict(peers),
        )  # fmt: skip
        yield GaugeMetricFamily(
            "libp2p_dht_routing_table_buckets", "Non-empty buckets of the routing table.",
            value=float(sum(1 for bucket in dht.buckets if bucket.peers)),
        )  # fmt: skip
        queries: Counter[tuple[str, str]] = Counter()
        for direction, gauge in (("inbound", dht.incoming_queries),
                                 ("outbound", dht.outgoing_queries)):  # fmt: skip
            queries[(direction, "success")] = gauge.success
            queries[(direction, "error")] = gauge.error
            queries[(direction, "timeout")] = gauge.timeout
        yield _counter(
            "libp2p_dht_queries",
            "Kademlia RPCs answered ('inbound') and sent ('outbound') by result "
            "(DHT.incoming_queries, outgoing_queries).",
            ("dir", "result"), queries,
        )  # fmt: skip

    def _pubsub(self, pubsub: pb.PubSub) -> Iterator[Metric]:
        label = self.view.topic_label
        peers, mesh, fanout = Counter(), Counter(), Counter()
        messages: Counter[tuple[str, str]] = Counter()
        data: Counter[tuple[str, str]] = Counter()
        others = 0
        for topic in pubsub.topics:
            # Only the topics this node chose (subscribed or published to): the ones
            # peers announce are theirs to choose, and would be a series each.
            if not (topic.subscribed or topic.fanout_peers):
                others += 1
                continue
            name = label(topic.name)
            peers[name] += len(topic.peers)
            mesh[name] += len(topic.mesh_peers)
            fanout[name] += len(topic.fanout_peers)
            for direction, gauge in (("inbound", topic.messages_in),
                                     ("outbound", topic.messages_out)):  # fmt: skip
                messages[(name, direction)] += gauge.cum_packets
                data[(name, direction)] += gauge.cum_bytes
        yield _gauge("libp2p_pubsub_topic_peers", "Peers known to be subscribed, per topic.",
                     ("topic",), dict(peers))  # fmt: skip
        yield _gauge("libp2p_pubsub_topic_mesh_peers", "Our mesh peers, per topic.",
                     ("topic",), dict(mesh))  # fmt: skip
        yield _gauge("libp2p_pubsub_topic_fanout_peers", "Our fanout peers, per topic.",
                     ("topic",), dict(fanout))  # fmt: skip
        yield _counter(
            "libp2p_pubsub_messages",
            "Messages per topic: received ('inbound', duplicates included) and every copy "
            "sent ('outbound').", ("topic", "dir"), messages,
        )  # fmt: skip
        yield _counter("libp2p_pubsub_message_bytes", "Message data bytes per topic.",
                       ("topic", "dir"), data)  # fmt: skip
        yield GaugeMetricFamily(
            "libp2p_pubsub_other_topics",
            "Topics only peers subscribe to (not exported per topic).", value=float(others),
        )  # fmt: skip
        yield GaugeMetricFamily("libp2p_pubsub_peers", "Pubsub peers.",
                                value=float(len(pubsub.peers)))  # fmt: skip

    def _rcmgr(self, resources: pb.ResourceManager) -> Iterator[Metric]:
        label = self.view.scope_label
        conns: dict[tuple[str, str], float] = {}
        streams: dict[tuple[str, str, str], float] = {}
        memory: dict[tuple[str, str, str], float] = {}
        limits: dict[tuple[str, str], float] = {}
        for scope in resources.scopes:
            kind, _, name = scope.name.partition(":")
            usage = scope.usage
            if kind == "system" and not name:
                for key, value in _directional(usage.conns_inbound, usage.conns_outbound,
                                               usage.conns_total):  # fmt: skip
                    conns[(key, "system")] = value
                for key, value in _directional(usage.streams_inbound, usage.streams_outbound,
                                               usage.streams_total):  # fmt: skip
                    streams[(key, "system", "")] = value
                memory[("system", "", "")] = usage.memory
            elif kind == "protocol" and name:
                protocol = label(name)
                for key, value in _directional(usage.streams_inbound, usage.streams_outbound,
                                               usage.streams_total):  # fmt: skip
                    streams[(key, "protocol", protocol)] = value
                memory[("protocol", protocol, "")] = usage.memory
            elif kind == "service" and name:
                memory[("service", "", label(name))] = usage.memory
            else:
                continue
            scope_name = label(scope.name)
            for resource, value in _limit_fields(scope.limit):
                limits[(scope_name, resource)] = value
        yield _gauge("libp2p_rcmgr_connections",
                     "Connections the resource manager counts, by direction and scope.",
                     ("dir", "scope"), conns)  # fmt: skip
        yield _gauge("libp2p_rcmgr_streams",
                     "Streams the resource manager counts, by direction, scope and protocol.",
                     ("dir", "scope", "protocol"), streams)  # fmt: skip
        yield _gauge("libp2p_rcmgr_memory",
                     "Memory reserved with the resource manager, bytes, by scope.",
                     ("scope", "protocol", "service"), memory)  # fmt: skip
        yield _gauge("libp2p_rcmgr_limit", "The resource manager's limits (0 = none: omitted).",
                     ("scope", "resource"), limits)  # fmt: skip
        # go's name has no _total: an untyped family of that exact name, as rate() reads it.
        blocked = Metric("libp2p_rcmgr_blocked_resources",
                         "Reservations the resource manager refused (a lifetime count).",
                         "unknown")  # fmt: skip
        blocked.add_sample("libp2p_rcmgr_blocked_resources", {}, float(resources.blocked))
        yield blocked

    def _peers(self, state: pb.State) -> Iterator[Metric]:
        label = self.view.peer_label
        conns: Counter[str] = Counter()
        streams: Counter[str] = Counter()
        bandwidth: Counter[tuple[str, str]] = Counter()
        for conn in state.subsystems.connections:
            if conn.status not in (pb.ACTIVE, pb.CLOSING):
                continue
            peer = label(conn.peer_id)
            conns[peer] += 1
            streams[peer] += sum(1 for s in conn.streams.streams if s.status == pb.ACTIVE)
            bandwidth[(peer, "inbound")] += conn.traffic.traffic_in.inst_bw
            bandwidth[(peer, "outbound")] += conn.traffic.traffic_out.inst_bw
        yield _gauge("libp2p_peer_connections", "Open connections per peer (per-peer option).",
                     ("peer_id",), dict(conns))  # fmt: skip
        yield _gauge("libp2p_peer_streams", "Open streams per peer (per-peer option).",
                     ("peer_id",), dict(streams))  # fmt: skip
        yield _gauge("libp2p_peer_bandwidth_bytes_per_second",
                     "Bandwidth per peer over the snapshot window, bytes/s (per-peer option).",
                     ("peer_id", "dir"), dict(bandwidth))  # fmt: skip

    def _health(self, health: ServerHealth) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "libp2p_introspection_sessions",
            "Introspection sessions open now.",
            value=health.sessions,
        )
        for name, doc, value in (
            ("sessions", "Introspection sessions accepted.", health.sessions_total),
            ("refused", "Upgrades refused (origin, token, session limit).", health.refused_total),
            ("handshakes_shed", "Connections closed in their handshake for newer ones.",
             health.shed_total),
            ("dropped", "Push items dropped or evicted, over every session.",
             health.dropped_total),
            ("notices", "DISCARDING_EVENTS notices sent, over every session.",
             health.notices_total),
            ("sent_bytes", "Bytes written to introspection clients.", health.bytes_sent_total),
            ("snapshots", "Snapshots published.", health.snapshots_total),
            ("events", "Events published.", health.events_total),
            ("snapshot_errors", "Snapshots the source failed to build.",
             health.snapshot_errors_total),
        ):  # fmt: skip
            yield CounterMetricFamily(f"libp2p_introspection_{name}", doc, value=float(value))
        yield SummaryMetricFamily(
            "libp2p_introspection_snapshot_build_seconds",
            "Time the source took to build each snapshot, seconds.",
            count_value=health.snapshot_builds,
            sum_value=health.snapshot_build_seconds,
        )
        yield CounterMetricFamily(
            "libp2p_introspection_metrics_unreadable",
            "Events and snapshots the metrics view could not read.",
            value=float(self.view.unreadable_events + self.view.unreadable_snapshots),
        )


def _histogram_family(
    name: str, doc: str, names: Sequence[str], histogram: Histogram
) -> Iterator[Metric]:
    if histogram.series:
        yield _histogram(name, doc, names, histogram)


def _directional(inbound: int, outbound: int, total: int) -> Iterator[tuple[str, float]]:
    """``dir`` values of a usage: inbound and outbound, and ``"unknown"`` for what py-libp2p
    keeps only as a total (the total beyond them)."""
    yield "inbound", float(inbound)
    yield "outbound", float(outbound)
    rest = total - inbound - outbound
    if rest > 0:
        yield "unknown", float(rest)


#: go's ``resource`` names for our ResourceUsage fields.
_RESOURCES = (("conns_inbound", "conns_inbound"), ("conns_outbound", "conns_outbound"),
              ("conns_total", "conns"), ("streams_inbound", "streams_inbound"),
              ("streams_outbound", "streams_outbound"), ("streams_total", "streams"),
              ("memory", "memory"), ("fds", "fd"))  # fmt: skip


def _limit_fields(limit: pb.ResourceUsage) -> Iterator[tuple[str, float]]:
    for field, resource in _RESOURCES:
        value = getattr(limit, field)
        if value:
            yield resource, float(value)


def registry(collector: ViewCollector) -> CollectorRegistry:
    """A registry of our own holding ``collector`` only (not the process-wide default)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg
