"""Protobuf to the compact JSON the dashboard's page reads: whole snapshots.

Each snapshot is converted **once**, when it enters the store; every browser
gets the same text. And **incrementally**: what a connection and its streams
were converted to (their JSON forms and text) is kept from one snapshot to the
next and reused where the data it was made from did not change
(:class:`.convert_swarm.ConnectionCache`), so that the snapshot's text is built
from kept pieces, not encoded again whole. The parts are converted by
:mod:`.convert_swarm` (traffic, connections, streams, the DHT),
:mod:`.convert_ext` (the §3.1 extensions) and, for a node's runtime and events,
:mod:`.convert_events`; here they are put together, with the connections that
vanished carried on, and held to a budget.
Shapes (timestamps ms since the Unix epoch, byte counts in bytes, rates in bytes
per second):

Snapshot (:meth:`SnapshotConverter.convert`)::

    {"ts": instant_ts, "start": start_ts, "dur": snapshot_duration_ms,
     "traffic": TRAFFIC,
     "conns": [CONNECTION, ...],
     "dht": DHT or null,
     "node": NODE or null, "protocols": [PROTOCOL, ...],
     "pubsub": PUBSUB or null, "resources": RESOURCES or null}

    (TRAFFIC, CONNECTION and DHT: see :mod:`.convert_swarm`; NODE, PROTOCOL,
    PUBSUB, RESOURCES and PEERINFO, the §3.1 extensions: see :mod:`.convert_ext`;
    null when the snapshot lacks that subsystem, as every recording made before
    them does.)

Summary (:func:`summarize`, one point of the charts' time series)::

    {"ts", "bwIn", "bwOut", "in", "out", "conns", "active", "streams",
     "dhtPeers", "qin": QUERIES, "qout": QUERIES,
     "protos": {protocol: [bwIn, bwOut]} (the busiest protocols, B/s)}

Every string the converters emit is capped (a real node never comes near the
caps; each part's module says its caps, :mod:`.caps` defines the shared ones).
A longer value is cut, and the cut is shown: ``…(+N chars)`` (``…(+N bytes)``
for an id) ends it. A snapshot whose JSON text would take more than the
converter's budget (:data:`DEFAULT_MAX_SNAPSHOT_BYTES`, carried connections
included) is not converted at all: :meth:`SnapshotConverter.convert` raises
:class:`SnapshotTooLarge` before joining its text (its size is the exact sum of
its connections' texts and the rest), and the caller skips it with a notice.
The §3.1 extensions' text counts against the budget too. So one
string cannot cost more than its cap, however long it was on the wire, and no
page is sent a snapshot larger than the budget.
"""

from __future__ import annotations

import gc
import itertools
from dataclasses import dataclass, field
from typing import Any

from libp2p_introspection.dashboard import convert_ext as ext
from libp2p_introspection.dashboard.caps import dumps
from libp2p_introspection.dashboard.convert_ext import traffic_fields as _traffic
from libp2p_introspection.dashboard.convert_swarm import ConnectionCache, dht_to_json
from libp2p_introspection.dashboard.errors import DashboardError
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.wire import DEFAULT_LIMITS

JSON = dict[str, Any]

#: How long a connection that vanished from the server's snapshots stays in
#: the dashboard's, as CLOSED, ms (servers that keep closed connections
#: themselves, as ours does, make this moot).
DEFAULT_CLOSED_TTL_MS = 120_000
#: The most snapshots a vanished connection is carried through, whatever the
#: timestamps say (``DEFAULT_CLOSED_TTL_MS`` at one snapshot per 200 ms; an
#: honest source, one per second by default, ages them by time first).
DEFAULT_CLOSED_TTL_SNAPSHOTS = 600

#: Largest JSON text of one converted snapshot, characters (carried connections
#: included): 2.5 times the 24 MB of an honest snapshot of 10,000 connections of
#: 10 streams each (the default stream limit, 100,000).
DEFAULT_MAX_SNAPSHOT_BYTES = 64 * 1024 * 1024


#: The garbage collector's thresholds in a dashboard process (:func:`tune_collector`):
#: CPython's default for the young generations, a full collection at most once every
#: 100 collections of the middle one instead of every 10.
COLLECTOR_THRESHOLDS = (700, 10, 100)


def tune_collector() -> tuple[int, int, int]:
    """Set the process's garbage collector for following a big node; returns the
    thresholds it had (``gc.set_threshold(*them)`` puts them back).

    Each snapshot of a node of 5,000 connections of 10 streams leaves some 30,000
    new container objects alive (its conversion, the page's form of it), about a
    quarter of what the process holds, so with CPython's default thresholds every
    snapshot set off one or two full collections, each walking every object the
    process holds (about 130 ms each here: 150-200 ms per snapshot, a fifth of the
    process's time). What a snapshot leaves is freed by reference counting when the
    next replaces it, and full collections find next to nothing (measured: under
    100 objects each), so running them ten times less often keeps no more memory.
    Measured in the process that follows the mock (5,000 x 10, its churn, one
    snapshot a second): the collector's time per snapshot about 260 ms -> 120 ms.
    """
    before = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    return before  # type: ignore[return-value]


class SnapshotTooLarge(DashboardError, ValueError):
    """A snapshot whose JSON text would be larger than the converter's budget
    (the message says how large, and what it held)."""


def summarize(snapshot: JSON) -> JSON:
    """One chart point from a converted snapshot (shape ``Summary`` in the module doc)."""
    conns = snapshot["conns"]
    dht = snapshot["dht"]
    empty = {"success": 0, "error": 0, "timeout": 0}
    return {
        "ts": snapshot["ts"],
        "bwIn": snapshot["traffic"]["bwIn"],
        "bwOut": snapshot["traffic"]["bwOut"],
        "in": snapshot["traffic"]["in"],
        "out": snapshot["traffic"]["out"],
        "conns": len(conns),
        "active": sum(1 for c in conns if c["status"] == "ACTIVE"),
        "streams": sum(len(c["streams"]) for c in conns),
        "dhtPeers": sum(len(b["peers"]) for b in dht["buckets"]) if dht else 0,
        "qin": dht["qin"] if dht else empty,
        "qout": dht["qout"] if dht else empty,
        "protos": ext.summarize_protocols(snapshot.get("protocols", [])),
    }


@dataclass(slots=True)
class _Carried:
    """A connection carried on after it vanished (see :class:`SnapshotConverter`)."""

    data: JSON  # its CONNECTION form as last carried (status CLOSED, gone)
    closed_at: int  # when it closed, ms, never after it was last seen
    last_seen: int  # number of the last converted snapshot that held it
    text: str  # dumps(data)


@dataclass
class SnapshotConverter:
    """Converts a source's successive ``State`` messages (shape ``Snapshot`` above).

    Stateful in one way: a connection that was in the previous snapshot and
    is missing from this one (a server that drops closed connections at
    once, as go-libp2p's recordings do) is carried on as CLOSED, with
    ``gone: true``, zero rates, no streams and ``close`` set to its
    ``close_ts``, or to the ``instant_ts`` of the last snapshot that held it
    if its ``close_ts`` is 0 or later than that. Use one converter per
    source, in the source's order.

    What is carried is bounded whatever the data says:

    - **by count**: a converted snapshot holds at most ``max_connections``
      connections (the expansion limit a message is held to, 40,000 by
      default): the server's own first, then the carried ones that vanished
      most recently; those that vanished longest ago go first;
    - **by time**: a carried connection goes once a snapshot's
      ``instant_ts`` is more than ``closed_ttl_ms`` past its ``close``, and
      in any case after ``closed_ttl_snapshots`` snapshots without it. The
      count of snapshots is this converter's own clock: a ``close_ts`` of
      2^64 - 1, or an ``instant_ts`` that never moves or goes back, cannot
      keep a connection for ever (and one far ahead only ends what is
      carried then).

    So converting one snapshot costs at most what ``max_connections``
    connections of it would (carried ones have no streams), and the
    converter keeps at most ``max_connections`` carried connections.

    And bounded by size: every string is capped (module doc), and a snapshot
    whose JSON text, carried connections included, would take more than
    ``max_snapshot_bytes`` characters raises :class:`SnapshotTooLarge` (the
    exact size, counted from each connection's text before the whole is
    joined).

    And incremental (module doc): it keeps the previous snapshot's connections
    as converted, no more (a connection that is not in a snapshot is dropped
    from them; :meth:`reset` drops them all), and a connection's JSON form that
    did not change is the same dict in both snapshots.
    """

    closed_ttl_ms: int = DEFAULT_CLOSED_TTL_MS
    closed_ttl_snapshots: int = DEFAULT_CLOSED_TTL_SNAPSHOTS
    max_connections: int = DEFAULT_LIMITS.max_connections
    max_snapshot_bytes: int = DEFAULT_MAX_SNAPSHOT_BYTES
    #: The server's own connections in the previous snapshot, by (capped hex) id.
    _previous: dict[str, JSON] = field(default_factory=dict)
    #: ``instant_ts`` of the previous snapshot, ms.
    _previous_ts: int = 0
    #: Carried connections by id, the one that vanished longest ago first.
    _carried: dict[str, _Carried] = field(default_factory=dict)
    #: Snapshots converted so far (the clock the data cannot stop).
    _count: int = 0
    #: Pubsub topics' message counts of the previous snapshot, for their rates.
    _topic_rates: ext.TopicRates = field(default_factory=ext.TopicRates)
    #: The previous snapshot's pubsub peers as converted (what the next one reuses).
    _pubsub_peers: ext.PubsubPeers = field(default_factory=ext.PubsubPeers)
    #: The previous snapshot's connections as converted (what the next one reuses).
    _connections: ConnectionCache = field(default_factory=ConnectionCache)

    def reset(self) -> None:
        """Forget carried connections and every kept conversion (a new source)."""
        self._previous = {}
        self._previous_ts = 0
        self._carried = {}
        self._count = 0
        self._topic_rates.reset()
        self._pubsub_peers.reset()
        self._connections.clear()

    @property
    def kept_connections(self) -> int:
        """How many connections' conversions are kept (those of the last snapshot)."""
        return len(self._connections)

    def convert(self, state: pb.State) -> JSON:
        """The snapshot's compact JSON form (:meth:`convert_text`'s first result)."""
        return self.convert_text(state)[0]

    def convert_text(self, state: pb.State) -> tuple[JSON, str]:
        """The snapshot's compact JSON form and its text (what :func:`.caps.dumps`
        makes of it, built from the connections' kept texts).

        The form is a new dict, but its connections' dicts (and what they hold) are
        shared with the next snapshots' conversions while they do not change: the
        caller must not modify them (a dict that is the same object in two
        snapshots is the same connection, unchanged).

        Raises :class:`SnapshotTooLarge` when its text would take more than
        ``max_snapshot_bytes`` characters; the converter is then as it was
        before the call (the snapshot is as if it never came).
        """
        ts = state.instant_ts
        count = self._count + 1
        converted, by_id = self._connections.convert(state.subsystems.connections)
        conns = [c.data for c in converted]
        texts = [c.text for c in converted]
        present = {data["id"]: data for data in conns}
        carried = dict(self._carried)  # changed on a copy: kept only if the snapshot is
        for conn_id in present.keys() & carried.keys():  # back again (an id is never reused)
            del carried[conn_id]
        seen_at = self._previous_ts
        for conn_id, old in self._previous.items():
            if conn_id in present:
                continue
            closed_at = old["close"] if 0 < old["close"] <= seen_at else seen_at
            data = dict(old)
            data.update(status="CLOSED", gone=True, close=closed_at, bwIn=0, bwOut=0, streams=[])
            carried.pop(conn_id, None)
            carried[conn_id] = _Carried(data, closed_at, count - 1, dumps(data))
        oldest_count = count - self.closed_ttl_snapshots
        oldest_close = ts - self.closed_ttl_ms
        for conn_id in [
            conn_id
            for conn_id, c in carried.items()
            if c.last_seen < oldest_count or c.closed_at < oldest_close
        ]:
            del carried[conn_id]
        excess = len(carried) - max(self.max_connections - len(conns), 0)
        for conn_id in list(itertools.islice(carried, max(excess, 0))):  # longest gone first
            del carried[conn_id]
        texts.extend(c.text for c in carried.values())
        extensions = {
            "node": ext.node_to_json(state),
            "protocols": ext.protocols_to_json(state),
            "pubsub": ext.pubsub_to_json(
                state.subsystems, ts, self._topic_rates, self._pubsub_peers
            ),
            "resources": ext.resources_to_json(state.subsystems),
        }
        dht = dht_to_json(state.subsystems.dht) if state.subsystems.HasField("dht") else None
        traffic = _traffic(state.traffic, {})
        head = (
            f'{{"ts":{ts},"start":{state.start_ts},"dur":{state.snapshot_duration_ms},'
            f'"traffic":{dumps(traffic)},"conns":['
        )
        tail = f'],"dht":{dumps(dht)},{dumps(extensions)[1:]}'
        size = len(head) + sum(map(len, texts)) + max(len(texts) - 1, 0) + len(tail)
        if size > self.max_snapshot_bytes:
            raise SnapshotTooLarge(
                f"a snapshot of {len(conns)} connections "
                f"({sum(len(c['streams']) for c in conns)} streams) and {len(carried)} "
                f"closed ones carried would take more than {self.max_snapshot_bytes:,} "
                "characters of JSON, the most one snapshot may take"
            )
        conns.extend(c.data for c in carried.values())
        self._carried = carried
        self._count = count
        self._previous = present
        self._previous_ts = ts
        self._topic_rates.commit()
        self._connections.keep(by_id)
        data = {
            "ts": ts,
            "start": state.start_ts,
            "dur": state.snapshot_duration_ms,
            "traffic": traffic,
            "conns": conns,
            "dht": dht,
            **extensions,
        }
        # One join, not two, of some 15 MB at 5,000 x 10: the head and tail ride on the
        # first and last pieces (short strings copied, not the whole).
        if texts:
            texts[0] = head + texts[0]
            texts[-1] += tail
            return data, ",".join(texts)
        return data, head + tail
