"""What the Prometheus export knows: the hub's snapshots and events, folded into counters.

:class:`MetricsView` is a pure state machine (no I/O, no clock): the hub hands it
every event (:meth:`MetricsView.event_published`) and every snapshot
(:meth:`MetricsView.snapshot_published`) it hands the sessions, the same bytes and
the same objects, so the export and every client see one source of truth, whatever
the source (a live node, the synthetic node, a replay).

The view agrees with one snapshot at a time. Events are held until the next
snapshot and folded in just before it: after snapshot N, the counters count every
event published before N, and the gauges are N's. ``instant_ts`` (ms since epoch)
and the number of that snapshot are what the exposition reports it agrees with
(``libp2p_introspection_snapshot_instant_ts_ms``, ``..._snapshot_number``).

Connections are counted once each, by ``Connection.id``, from whichever says it
first: a ``ConnectionOpened`` event, or a snapshot holding the connection ACTIVE
or CLOSING that no event announced (one that existed before the source started, a
source that sends no events, events dropped). Likewise closed: a
``ConnectionClosed`` event, a snapshot holding it CLOSED or ERROR, or a snapshot it
is missing from. So ``opened - closed`` is the connections open in the snapshot.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import HEADER_SIZE
from libp2p_introspection.protocol.ids import transport_text
from libp2p_introspection.server.metrics import labels as lbl

log = logging.getLogger(__name__)

#: Events held for the next snapshot at most; past it the oldest are folded in at
#: once (the counters then run ahead of the snapshot by those events).
MAX_PENDING_EVENTS = 65_536

#: Identify's protocol ids (go-libp2p's ``ID`` and ``IDPush``).
IDENTIFY = "/ipfs/id/1.0.0"
IDENTIFY_PUSH = "/ipfs/id/push/1.0.0"

#: Bucket bounds, seconds or counts: go-libp2p's where go has the metric.
CONNECTION_DURATION_BUCKETS = tuple(2.0**i / 16 for i in range(25))  # 1/16 s .. 24 days
HANDSHAKE_LATENCY_BUCKETS = tuple(0.001 * 1.3**i for i in range(35))
IDENTIFY_COUNT_BUCKETS = tuple(float(n) for n in (*range(1, 21), *range(25, 101, 5)))
DHT_QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

#: py-libp2p's Kademlia message names (``messageType``); anything else is "other".
DHT_MESSAGE_TYPES = frozenset(
    {"FIND_NODE", "GET_VALUE", "PUT_VALUE", "GET_PROVIDERS", "ADD_PROVIDER", "PING", "UNKNOWN"}
)
_RESULTS = frozenset({"SUCCESS", "ERROR", "TIMEOUT"})

#: ``dir, transport, security, muxer, early_muxer, ip_version``: go's connection labels.
ConnLabels = tuple[str, str, str, str, str, str]
CONN_LABEL_NAMES = ("dir", "transport", "security", "muxer", "early_muxer", "ip_version")
_OPEN = (pb.ACTIVE, pb.CLOSING)
_ENDED = (pb.CLOSED, pb.ERROR)


class Histogram:
    """Observations by label values into fixed buckets (``bounds``, ascending, upper
    bounds; ``+Inf`` implied), with their sum: a Prometheus histogram's data."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        #: label values -> (count per bucket, +Inf last; sum of the observations)
        self.series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        """Add one observation ``value`` (negative ones count as 0) under ``labels``."""
        counts, total = self.series.setdefault(labels, ([0] * (len(self.bounds) + 1), [0.0]))
        value = max(0.0, value)
        index = next((i for i, bound in enumerate(self.bounds) if value <= bound), len(self.bounds))
        counts[index] += 1
        total[0] += value

    def count(self, labels: tuple[str, ...] | None = None) -> int:
        """Observations under ``labels`` (``None``: all of them)."""
        chosen = self.series.values() if labels is None else [self.series.get(labels, ([0], []))]
        return sum(sum(counts) for counts, _ in chosen)


@dataclass(slots=True)
class _Tracked:
    """A connection counted as opened and not yet as closed."""

    labels: ConnLabels
    open_ts: int
    handshake_seen: bool = False
    identified: bool = False


class MetricsView:
    """The counters and the latest snapshot the exposition is rendered from.

    ``per_peer``: also keep what the per-peer families need (a label per peer id;
    for small deployments). Never raises for what a source sends: an event it cannot
    read is counted in :attr:`unreadable_events`, a snapshot in
    :attr:`unreadable_snapshots` (the previous one stays).
    """

    def __init__(self, *, per_peer: bool = False) -> None:
        self.per_peer = per_peer
        #: The snapshot the view agrees with, its number and the frame's size, bytes.
        self.state: pb.State | None = None
        self.snapshot_number = 0
        self.snapshots_seen = 0
        self.events_seen = 0
        self.unreadable_events = 0
        self.unreadable_snapshots = 0
        self._pending: list[pb.Event] = []
        self._conns: dict[bytes, _Tracked] = {}
        self.conn_label = {name: lbl.CappedLabel() for name in CONN_LABEL_NAMES[1:4]}
        self.protocol_label = lbl.CappedLabel()
        self.topic_label = lbl.CappedLabel()
        self.scope_label = lbl.CappedLabel()
        self.peer_label = lbl.CappedLabel(cap=4 * lbl.MAX_VALUES)
        # go-libp2p's swarm
        self.opened: Counter[ConnLabels] = Counter()
        self.closed: Counter[ConnLabels] = Counter()
        self.key_types: Counter[tuple[str, str]] = Counter()
        self.duration = Histogram(CONNECTION_DURATION_BUCKETS)
        self.handshake = Histogram(HANDSHAKE_LATENCY_BUCKETS)
        # go-libp2p's identify
        # Fixed label sets start at 0, so that rate() over them has data from the start.
        self.identify: Counter[str] = Counter({"inbound": 0, "outbound": 0})
        self.identify_push: Counter[str] = Counter({"inbound": 0, "outbound": 0})
        self.push_support: Counter[str] = Counter({"supported": 0, "unsupported": 0})
        self.protocols_received = Histogram(IDENTIFY_COUNT_BUCKETS)
        self.addrs_received = Histogram(IDENTIFY_COUNT_BUCKETS)
        # ours
        self.dht_queries = Histogram(DHT_QUERY_BUCKETS)

    # ------------------------------------------------------------- the hub's calls

    def event_published(self, event: pb.Event) -> None:
        """Hold ``event`` (as the hub publishes it) for the next snapshot."""
        self.events_seen += 1
        self._pending.append(event)
        if len(self._pending) > MAX_PENDING_EVENTS:
            self._fold(self._pending[: len(self._pending) // 2])
            del self._pending[: len(self._pending) // 2]

    def snapshot_published(self, number: int, frame: bytes) -> None:
        """Fold the held events in, then snapshot ``number`` (its framed
        ``ServerMessage{state}``, PROTOCOL.md §2): the view now agrees with it."""
        self.snapshots_seen += 1
        pending, self._pending = self._pending, []
        self._fold(pending)
        try:
            # The hub's own frame, checked when it was built (or read, for a replay):
            # the payload is parsed without hashing it again.
            message = pb.ServerMessage.FromString(memoryview(frame)[HEADER_SIZE:])
        except Exception:  # a source's bytes: counted, never raised into the hub
            self.unreadable_snapshots += 1
            log.debug("metrics: snapshot %d is unreadable", number, exc_info=True)
            return
        state = message.state if message.WhichOneof("payload") == "state" else pb.State()
        self._reconcile(state)
        self.state = state
        self.snapshot_number = number

    # --------------------------------------------------------------------- events

    def _fold(self, events: Iterable[pb.Event]) -> None:
        for event in events:
            name = event.type.name
            if name not in _HANDLED:
                continue
            try:
                content = json.loads(event.content)
                if not isinstance(content, dict):
                    raise ValueError("content is not a JSON object")
                _HANDLED[name](self, content)
            except Exception:
                self.unreadable_events += 1
                log.debug("metrics: unreadable %s event", name, exc_info=True)

    def _on_connection_opened(self, content: dict) -> None:
        conn_id = bytes.fromhex(str(content["connId"]))
        if conn_id in self._conns:
            return
        labels = self._labels(
            str(content["direction"]), str(content["transport"]), str(content["localAddr"]),
            str(content["encryption"]), str(content["multiplexer"]),
        )  # fmt: skip
        self._open(conn_id, labels, int(content["openTs"]), str(content["peerId"]))

    def _on_connection_closed(self, content: dict) -> None:
        conn_id = bytes.fromhex(str(content["connId"]))
        tracked = self._conns.pop(conn_id, None)
        if tracked is None:  # opened before the view knew of it: never counted open
            return
        self.closed[tracked.labels] += 1
        duration_ms = int(content["closeTs"]) - int(content["openTs"])
        self.duration.observe(tracked.labels, duration_ms / 1000)

    def _on_stream_opened(self, content: dict) -> None:
        # go counts identify messages: one we answered is "inbound", one we asked
        # for (and received) "outbound"; a push we sent "outbound", received "inbound".
        protocol, direction = content["protocol"], content["direction"]
        if direction not in ("inbound", "outbound"):
            return
        if protocol == IDENTIFY:
            self.identify[direction] += 1
        elif protocol == IDENTIFY_PUSH:
            self.identify_push[direction] += 1

    def _on_dht_query(self, content: dict) -> None:
        direction = str(content["direction"]).lower()
        if direction not in ("inbound", "outbound"):
            return
        message = str(content["messageType"])
        result = str(content["result"])
        self.dht_queries.observe(
            (direction, message if message in DHT_MESSAGE_TYPES else lbl.OTHER,
             result if result in _RESULTS else lbl.OTHER),
            float(content["totalTimeMs"]) / 1000,
        )  # fmt: skip

    # ------------------------------------------------------------------ snapshots

    def _labels(
        self, direction: str, transport_id: str, local_addr: str, security: str, muxer: str
    ) -> ConnLabels:
        label = self.conn_label
        return (
            direction if direction in ("inbound", "outbound") else "unknown",
            label["transport"](lbl.transport_of(transport_id, local_addr)),
            label["security"](security),
            label["muxer"](muxer),
            "false",  # py-libp2p negotiates the muxer after security, never early
            lbl.ip_version(local_addr),
        )

    def _open(self, conn_id: bytes, labels: ConnLabels, open_ts: int, peer_id: str) -> None:
        self._conns[conn_id] = _Tracked(labels, open_ts)
        self.opened[labels] += 1
        self.key_types[(labels[0], lbl.key_type(peer_id))] += 1

    def _reconcile(self, state: pb.State) -> None:
        present: set[bytes] = set()
        for conn in state.subsystems.connections:
            present.add(conn.id)
            tracked = self._conns.get(conn.id)
            if tracked is None:
                if conn.status not in _OPEN:
                    continue
                labels = self._labels(
                    "outbound" if conn.role == pb.INITIATOR else "inbound",
                    transport_text(conn.transport_id), conn.endpoints.src_multiaddr,
                    conn.attribs.encryption, conn.attribs.multiplexer,
                )  # fmt: skip
                self._open(conn.id, labels, conn.timeline.open_ts, conn.peer_id)
                tracked = self._conns[conn.id]
            timeline = conn.timeline
            if not tracked.handshake_seen and timeline.upgraded_ts and timeline.open_ts:
                tracked.handshake_seen = True
                self.handshake.observe(
                    tracked.labels[1:], (timeline.upgraded_ts - timeline.open_ts) / 1000
                )
            if not tracked.identified and conn.HasField("peer"):
                tracked.identified = True
                peer = conn.peer
                self.protocols_received.observe((), len(peer.protocols))
                self.addrs_received.observe((), len(peer.listen_addrs))
                supported = IDENTIFY_PUSH in peer.protocols
                self.push_support["supported" if supported else "unsupported"] += 1
            if conn.status in _ENDED:
                del self._conns[conn.id]
                self.closed[tracked.labels] += 1
                if timeline.close_ts and timeline.open_ts:
                    self.duration.observe(
                        tracked.labels, (timeline.close_ts - timeline.open_ts) / 1000
                    )
        # Gone from the snapshot without a word: closed (its duration is unknown).
        for conn_id in [c for c in self._conns if c not in present]:
            self.closed[self._conns.pop(conn_id).labels] += 1

    @property
    def open_connections(self) -> int:
        """Connections counted opened and not closed: the snapshot's ACTIVE and CLOSING ones."""
        return len(self._conns)


_HANDLED = {
    "ConnectionOpened": MetricsView._on_connection_opened,
    "ConnectionClosed": MetricsView._on_connection_closed,
    "StreamOpened": MetricsView._on_stream_opened,
    "InboundDHTQuery": MetricsView._on_dht_query,
    "OutboundDHTQuery": MetricsView._on_dht_query,
}
