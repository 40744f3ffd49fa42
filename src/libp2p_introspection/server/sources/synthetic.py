"""A synthetic libp2p node for load tests and benchmarks: ``serve --source mock``.

:class:`SyntheticSource` simulates a py-libp2p node without any networking:
nothing is dialed, every address is a string. It looks like
:class:`~libp2p_introspection.introspector.HostIntrospector` on the wire: the
same event type names and property schemas
(:mod:`libp2p_introspection.introspector.events`), the same id scheme (one
8-byte big-endian counter shared by connections and streams, never reused),
the same retention rules and the same traffic semantics.

What is simulated, per :meth:`SyntheticSource.state` call (one snapshot):

* **Connections**: ``connections`` ACTIVE connections at all times, each to a
  distinct peer (base58 ``12D3KooW...`` Ed25519-style peer ids), over TCP
  (``transport_id`` ``b"tcp"``), ``/noise`` with ``/yamux/1.0.0`` (about 80%)
  or ``/mplex/6.7.0``, half dialed by us (INITIATOR: we use an ephemeral
  port, they listen on 4001), half accepted (RESPONDER). ``latency_ns`` is a
  per-connection round-trip time (lognormal around 40 ms) with +-10% jitter
  per snapshot.
* **Churn**: each call closes ``round(churn * connections)`` ACTIVE
  connections (half-up rounding) and opens as many new ones to new peers, so
  the ACTIVE count stays at ``connections``. A closed connection stays in
  snapshots as CLOSED with ``close_ts`` for ``closed_connection_lifetime_ms``
  and then disappears; its streams appear CLOSED in the snapshot where it
  closed and are gone from the next one (as with the real introspector).
* **Streams**: ``streams`` ACTIVE streams per ACTIVE connection, with
  protocols drawn from a realistic set (gossipsub, Kademlia, ping, identify,
  bitswap, relay, AutoNAT). A few streams per snapshot (1% of the ACTIVE
  streams, at least 1, at most 20) close and are replaced by a new stream on
  the same connection. A closed stream appears in exactly one snapshot as
  CLOSED (with ``close_ts``) and is then dropped.
* **Traffic**: each stream has a per-protocol packet rate and packet size
  (scaled by a per-stream lognormal factor); each snapshot adds a random
  number of packets around ``rate * window``. A connection carries its
  streams' payload plus 28 bytes of framing per packet (yamux header and
  Noise MAC) plus its handshake bytes; the node-wide total is the sum over
  every connection the node has had, closed and purged ones included. The
  simulated node is introspected since it started: the connections it has
  when the source is created (opened up to hours before) come with the
  traffic of their lives so far (their handshake, and each stream's packets
  since it opened, at its rates), so that the first snapshot adds up however
  soon it is taken (the server takes one as it starts): totals that cover
  the connections' ages, a bandwidth that covers the window only.
  ``cum_bytes``/``cum_packets`` (bytes, packets) never decrease;
  ``inst_bw`` (bytes per second) is ``floor(delta_bytes * 1000 / window_ms)``
  over ``start_ts..instant_ts`` (``start_ts`` is the previous call's
  ``instant_ts``, the source's creation time for the first call). A call
  with an empty window adds no traffic and reports ``inst_bw`` 0.
* **DHT** (when ``dht_peers > 0``): ``/ipfs/kad/1.0.0``, k=20, alpha=3,
  beta=3; ``dht_peers`` peers laid out over common-prefix-length buckets as
  in a real routing table (full buckets of 20 at low cpl, then halving); the
  cpl is simulated (not derived from the peers' Kademlia keys). Statuses are
  mostly ACTIVE with a few MISSING and CANDIDATE peers; each snapshot some
  statuses change and some MISSING peers are replaced by new CANDIDATE peers
  (whose ``age_in_bucket``, ms, restarts at 0). ``incoming_queries`` /
  ``outgoing_queries`` count the simulated queries of :meth:`run` (one per
  DHT query event; as with the real introspector, no cancelled query is
  simulated: it would have no event and no count).

Events (all ``ts`` in ms since epoch) go to the sink registered with
:meth:`set_event_sink`, never to the outlet:

* during :meth:`state`, at the moment of each change and stamped with the
  snapshot's ``instant_ts``: ``StreamClosed`` for each stream of a closing
  connection, then ``ConnectionClosed``; ``ConnectionOpened`` for each new
  connection, then ``StreamOpened`` for each of its streams; then
  ``StreamClosed``/``StreamOpened`` for each replaced stream. Connection
  events are never sampled. Stream events are **sampled by stream** when
  the expected number per call (``2 * round(churn * connections) * streams``
  plus two per replaced stream) exceeds ``max_stream_events_per_snapshot``:
  a fixed fraction of streams, chosen by a hash of the stream id, get both
  their ``StreamOpened`` and their ``StreamClosed``; the others get neither
  (counted in :attr:`SyntheticSource.suppressed_stream_events`). So a
  5,000-connection node with churn does not flood clients with thousands of
  stream events per snapshot, and a client still sees whole stream lives;
* during :meth:`run`: ``InboundDHTQuery``/``OutboundDHTQuery`` at
  ``events_per_second``, evenly spaced on trio's clock, with the content keys
  of the real introspector's (PROTOCOL.md §3): ``peerIds`` one peer of the
  DHT peer set, ``ts`` when the RPC was sent or received (its emission time
  minus ``totalTimeMs``), FIND_NODE targets peer ids and other targets
  sha256-multihash keys in hex, 30% of the outbound FIND_NODE queries
  ``DISCOVERY``. Their content comes from a random generator of its own, so
  given the seed the sequence of query events is fixed, whatever the timing
  of snapshots.

Deterministic: with the same options (same seed, same fake clock) and the
same sequence of calls, ``runtime()`` and every ``state()`` serialize to the
same bytes and the same events are emitted. All randomness comes from
``random.Random`` instances seeded from ``seed``; iteration is over lists and
insertion-ordered dicts only. (``runtime()`` reports the installed libp2p
version and this machine's platform, like the real introspector, so it is
byte-identical on one machine.)

Performance: every connection and stream keeps its ``pb.Connection`` /
``pb.Stream`` message for its whole life; a snapshot only updates the
counters in place and serializes the connection messages one by one into
the ``State``'s bytes (:meth:`SyntheticSource.encoded_state`, the server's
path), never copying them.
"""

from __future__ import annotations

import logging
import math
import random
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import trio

from libp2p_introspection.abc import EventSink, SampledSource, SourceOutlet
from libp2p_introspection.config import DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
from libp2p_introspection.introspector import dht, events
from libp2p_introspection.introspector.clock import ClockMs, wall_clock_ms
from libp2p_introspection.introspector.dht import QueryCounts
from libp2p_introspection.introspector.events import EventSpec, build_event
from libp2p_introspection.introspector.host import libp2p_version, platform_description
from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.framing import assemble_state

logger = logging.getLogger(__name__)

#: ``Runtime.implementation`` of a synthetic node.
IMPLEMENTATION = "py-libp2p (synthetic)"

#: Kademlia parameters reported in ``DHT.params``.
DHT_PROTOCOL = "/ipfs/kad/1.0.0"
DHT_K = 20
DHT_ALPHA = 3
DHT_BETA = 3
#: Kademlia has one bucket per common prefix length of a 256-bit key.
DHT_MAX_BUCKETS = 256
#: Duration reported for an outbound query that timed out, ms (py-libp2p's QUERY_TIMEOUT).
DHT_QUERY_TIMEOUT_MS = 10_000
#: Share of the outbound FIND_NODE queries sent by a routing-table refresh (``DISCOVERY``).
DHT_REFRESH_SHARE = 0.3
#: Hex of a sha256 multihash's prefix: the simulated keys of non-FIND_NODE queries.
_MULTIHASH_SHA256 = "1220"

#: Our listen port, and the one the peers we dial listen on.
LISTEN_PORT = 4001
#: Bytes of framing per packet on a connection: yamux header (12) + Noise MAC (16).
FRAMING_BYTES = 28
#: Fraction of ACTIVE streams replaced per snapshot, and its bounds.
STREAM_CHURN_FRACTION = 0.01
STREAM_CHURN_MAX = 20

_UINT32_MAX = 0xFFFFFFFF
_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
#: Identity multihash (0x00, length 36) of a protobuf PublicKey {Type: Ed25519, Data: 32 bytes}.
_ED25519_PEER_ID_PREFIX = bytes([0x00, 0x24, 0x08, 0x01, 0x12, 0x20])
#: First octets of public-looking IPv4 remote addresses (big cloud and ISP ranges).
_PUBLIC_OCTETS = (3, 13, 18, 34, 35, 44, 52, 54, 64, 78, 88, 95, 104, 128, 139, 141, 144, 147,
                  149, 157, 159, 161, 165, 167, 178, 185, 188, 193, 195, 203, 212, 217)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Profile:
    """Traffic of one protocol: packets per second and bytes per packet, each direction."""

    protocol: str
    weight: int
    pps_in: float
    pps_out: float
    size_in: int
    size_out: int


#: Stream protocols with their relative frequency and typical traffic.
_PROFILES: tuple[_Profile, ...] = (
    _Profile("/meshsub/1.1.0", 26, 4.0, 4.0, 520, 480),
    _Profile("/ipfs/kad/1.0.0", 20, 0.5, 0.5, 310, 260),
    _Profile("/ipfs/ping/1.0.0", 14, 0.1, 0.1, 32, 32),
    _Profile("/ipfs/bitswap/1.2.0", 12, 6.0, 2.0, 1380, 190),
    _Profile("/ipfs/id/1.0.0", 8, 0.02, 0.02, 1150, 1150),
    _Profile("/meshsub/1.0.0", 4, 2.0, 2.0, 450, 450),
    _Profile("/ipfs/id/push/1.0.0", 4, 0.01, 0.01, 600, 600),
    _Profile("/libp2p/circuit/relay/0.2.0/hop", 4, 3.0, 3.0, 1000, 1000),
    _Profile("/libp2p/autonat/1.0.0", 3, 0.02, 0.02, 210, 180),
)
_PROFILE_WEIGHTS: tuple[int, ...] = tuple(p.weight for p in _PROFILES)

_INBOUND_QUERY_TYPES = ("FIND_NODE", "GET_PROVIDERS", "GET_VALUE", "ADD_PROVIDER", "PUT_VALUE")
_INBOUND_QUERY_WEIGHTS = (60, 16, 9, 9, 6)
_OUTBOUND_QUERY_TYPES = _INBOUND_QUERY_TYPES
_OUTBOUND_QUERY_WEIGHTS = (66, 14, 8, 8, 4)

_ACTIVE = pb.ACTIVE
_CLOSED = pb.CLOSED
_PEER_ACTIVE = pb.DHT.PeerInDHT.ACTIVE
_PEER_MISSING = pb.DHT.PeerInDHT.MISSING
_PEER_CANDIDATE = pb.DHT.PeerInDHT.CANDIDATE


def base58_encode(data: bytes) -> str:
    """Bitcoin-alphabet base58 (as used for libp2p peer ids)."""
    zeros = len(data) - len(data.lstrip(b"\0"))
    number = int.from_bytes(data, "big")
    digits: list[str] = []
    while number:
        number, rem = divmod(number, 58)
        digits.append(_B58_ALPHABET[rem])
    return "1" * zeros + "".join(reversed(digits))


def peer_id_from_key(key: bytes) -> str:
    """The base58 peer id of a 32-byte Ed25519 public key (52 characters, ``12D3KooW...``)."""
    if len(key) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(key)}")
    return base58_encode(_ED25519_PEER_ID_PREFIX + key)


def dht_bucket_sizes(peers: int, k: int = DHT_K) -> list[int]:
    """Peers per cpl bucket (index = cpl) for a routing table of ``peers`` peers.

    Like a real table in a large network: buckets of ``k`` peers at low cpl
    while at least ``2k`` remain, then each bucket holds half of what is left
    (rounded up), e.g. 40 -> [20, 10, 5, 3, 1, 1].
    """
    sizes: list[int] = []
    remaining = peers
    while remaining > 0:
        take = k if remaining >= 2 * k else (remaining + 1) // 2
        sizes.append(take)
        remaining -= take
    return sizes


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _check_int(name: str, value: object, *, minimum: int = 0) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"SyntheticOptions.{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"SyntheticOptions.{name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class SyntheticOptions:
    """Shape of the simulated node.

    :param connections: ACTIVE connections at all times.
    :param streams: ACTIVE streams per ACTIVE connection.
    :param dht_peers: peers in the DHT routing table (0: the node has no DHT,
        no ``State.subsystems.dht`` and no DHT event types).
    :param events_per_second: DHT query events emitted by ``run()``, per
        second of trio's clock (0: none).
    :param churn: fraction of ``connections`` replaced per snapshot, in [0, 1].
    :param seed: seed of every random choice.
    :param closed_connection_lifetime_ms: how long a CLOSED connection stays
        in snapshots, ms.
    :param clock_ms: wall clock, ms since the Unix epoch (default: the real
        clock); every timestamp and bandwidth window uses it.
    :param max_stream_events_per_snapshot: above this many expected
        ``StreamOpened``/``StreamClosed`` events per ``state()`` call, only a
        sample of streams get events, so that about this many are emitted.
        A snapshot's events reach the server in one burst, and a session's
        queue holds 256 messages by default (PROTOCOL.md §4.6): the default
        of 100 plus the ``2 * round(churn * connections)`` connection events
        (never sampled) fit in it up to about 3,000 connections at 2% churn.
    """

    connections: int = 50
    streams: int = 4
    dht_peers: int = 40
    events_per_second: float = 20.0
    churn: float = 0.02
    seed: int = 0
    closed_connection_lifetime_ms: int = DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
    clock_ms: Callable[[], int] | None = None
    max_stream_events_per_snapshot: int = 100

    def __post_init__(self) -> None:
        _check_int("connections", self.connections)
        _check_int("streams", self.streams)
        _check_int("dht_peers", self.dht_peers)
        _check_int("seed", self.seed, minimum=-(2**63))
        _check_int("closed_connection_lifetime_ms", self.closed_connection_lifetime_ms)
        _check_int("max_stream_events_per_snapshot", self.max_stream_events_per_snapshot)
        for name in ("events_per_second", "churn"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"SyntheticOptions.{name} must be a number, got {value!r}")
        if not (math.isfinite(self.events_per_second) and self.events_per_second >= 0):
            raise ValueError(
                "SyntheticOptions.events_per_second must be a finite number >= 0, "
                f"got {self.events_per_second}"
            )
        if not 0.0 <= self.churn <= 1.0:  # also rejects NaN
            raise ValueError(f"SyntheticOptions.churn must be in [0, 1], got {self.churn}")
        buckets = len(dht_bucket_sizes(self.dht_peers))
        if buckets > DHT_MAX_BUCKETS:
            raise ValueError(
                f"SyntheticOptions.dht_peers={self.dht_peers} needs {buckets} buckets of at most "
                f"{DHT_K} peers; a routing table has {DHT_MAX_BUCKETS}"
            )
        if self.clock_ms is not None and not callable(self.clock_ms):
            raise TypeError("SyntheticOptions.clock_ms must be callable or None")


class _Stream:
    """One simulated stream and its persistent ``pb.Stream`` (inside its connection's message)."""

    __slots__ = ("busy", "close_ts", "gin", "gout", "hex", "id", "in_bytes", "in_packets",
                 "msg", "open_ts", "out_bytes", "out_packets", "pps_in", "pps_out", "profile",
                 "role", "size_in", "size_out", "status")  # fmt: skip

    def __init__(self, sid: bytes, profile: _Profile, role: int, open_ts: int, scale: float):
        self.id = sid
        self.hex = sid.hex()
        self.profile = profile
        self.role = role
        self.open_ts = open_ts
        self.close_ts = 0
        self.status = _ACTIVE
        self.pps_in = profile.pps_in * scale
        self.pps_out = profile.pps_out * scale
        self.size_in = profile.size_in
        self.size_out = profile.size_out
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        #: Whether the gauges show a non-zero ``inst_bw``.
        self.busy = False
        self.msg: Any = None
        self.gin: Any = None
        self.gout: Any = None


class _Conn:
    """One simulated connection and its persistent ``pb.Connection``."""

    __slots__ = ("base_latency_ns", "close_ts", "gin", "gout", "hex", "id", "in_bytes",
                 "in_packets", "local_addr", "msg", "muxer", "open_ts", "out_bytes",
                 "out_packets", "peer_id", "prev_in", "prev_out", "remote_addr", "role",
                 "status", "streams", "upgraded_ts")  # fmt: skip

    def __init__(self) -> None:
        self.id = b""
        self.hex = ""
        self.peer_id = ""
        self.role = pb.INITIATOR
        self.local_addr = ""
        self.remote_addr = ""
        self.muxer = ""
        self.open_ts = self.upgraded_ts = self.close_ts = 0
        self.status = _ACTIVE
        self.base_latency_ns = 0
        self.in_bytes = self.in_packets = self.out_bytes = self.out_packets = 0
        self.prev_in = self.prev_out = 0
        self.streams: list[_Stream] = []
        self.msg = pb.Connection()
        self.gin: Any = None
        self.gout: Any = None


class _DhtPeer:
    """One routing-table entry; replaced in place (new peer id, new ``added_ts``)."""

    __slots__ = ("added_ts", "peer_id", "status")

    def __init__(self, peer_id: str, status: int, added_ts: int) -> None:
        self.peer_id = peer_id
        self.status = status
        self.added_ts = added_ts


def _direction(role: int) -> str:
    return "outbound" if role == pb.INITIATOR else "inbound"


class SyntheticSource(SampledSource):
    """A simulated py-libp2p node (see the module docstring for what is simulated).

    The simulation advances only when :meth:`state` is called (connections,
    streams, traffic, DHT table) and while :meth:`run` runs (DHT queries).
    """

    def __init__(self, options: SyntheticOptions | None = None) -> None:
        self.options = options or SyntheticOptions()
        opts = self.options
        self._clock_ms: ClockMs = opts.clock_ms or wall_clock_ms
        self._rng = random.Random(f"libp2p-introspection/synthetic/{opts.seed}/node")
        self._query_rng = random.Random(f"libp2p-introspection/synthetic/{opts.seed}/queries")
        self._sink: EventSink | None = None
        self._next_id = 1
        self.start_ts = max(0, self._clock_ms())
        self._last_instant = self.start_ts
        rng = self._rng
        self.peer_id = self._new_peer_id()
        self._local_ip = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 255)}"
        #: Retained connections (ACTIVE and CLOSED), oldest first.
        self._conns: dict[bytes, _Conn] = {}
        #: ACTIVE connections, oldest first.
        self._active: list[_Conn] = []
        #: CLOSED connections in closing order, for purging.
        self._closed: deque[_Conn] = deque()
        #: Connections closed in the previous snapshot (their streams go, their bandwidth drops).
        self._just_closed: list[_Conn] = []
        #: ACTIVE connections with a stream closed in the previous snapshot.
        self._stream_closed_on: list[_Conn] = []
        self._node_in_bytes = self._node_in_packets = 0
        self._node_out_bytes = self._node_out_packets = 0
        self._node_prev_in = self._node_prev_out = 0
        per_call = 2 * self._churned_per_call() * opts.streams + 2 * self._stream_churn_count(
            opts.connections * opts.streams
        )
        fraction = min(1.0, opts.max_stream_events_per_snapshot / per_call) if per_call else 1.0
        #: Stream ids hashing below this get events (see :meth:`_emit_stream_event`).
        self._stream_sample_below = int(fraction * 2**64)
        #: Stream events not emitted because of ``max_stream_events_per_snapshot``.
        self.suppressed_stream_events = 0
        #: DHT queries simulated by :meth:`run` (events emitted or not).
        self.dht_queries = 0
        self._incoming = QueryCounts()
        self._outgoing = QueryCounts()
        self._dht_buckets: list[list[_DhtPeer]] = []
        self._dht_peers: list[_DhtPeer] = []
        for _ in range(opts.connections):
            self._adopt_connection()
        # The node's bandwidth, like its connections', counts from now.
        self._node_prev_in, self._node_prev_out = self._node_in_bytes, self._node_out_bytes
        self._build_dht()
        specs = events.CONNECTION_EVENTS + (events.DHT_EVENTS if opts.dht_peers else ())
        self._specs: tuple[EventSpec, ...] = specs

    # ------------------------------------------------------------------ helpers

    def _new_id(self) -> bytes:
        value = self._next_id
        self._next_id += 1
        return value.to_bytes(8, "big")

    def _new_peer_id(self) -> str:
        return peer_id_from_key(self._rng.randbytes(32))

    def _remote_ip(self) -> tuple[str, str]:
        """(``ip4``|``ip6``, address) of a public-looking remote host."""
        rng = self._rng
        if rng.random() < 0.1:
            groups = ":".join(f"{rng.randrange(1, 0x10000):x}" for _ in range(3))
            return "ip6", f"2a01:4f8:{groups}::{rng.randrange(1, 0x10000):x}"
        first = _PUBLIC_OCTETS[rng.randrange(len(_PUBLIC_OCTETS))]
        return "ip4", f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"

    def _emit(self, spec: EventSpec, ts: int, properties: Mapping[str, Any]) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink(build_event(spec, ts, properties))
        except Exception:
            logger.exception("synthetic source: event sink failed for %s", spec.name)

    def _emit_stream_event(
        self, stream: _Stream, spec: EventSpec, ts: int, properties: Mapping[str, Any]
    ) -> None:
        # Multiplicative (Fibonacci) hashing of the sequential id: a fixed, well-spread
        # sample of streams, the same one at open and at close.
        if (int.from_bytes(stream.id, "big") * 0x9E3779B97F4A7C15) % 2**64 >= (
            self._stream_sample_below
        ):
            self.suppressed_stream_events += 1
            return
        self._emit(spec, ts, properties)

    def _churned_per_call(self) -> int:
        """Connections replaced per ``state()`` call: ``churn * connections``, rounded half up."""
        return _round_half_up(self.options.churn * self.options.connections)

    @staticmethod
    def _stream_churn_count(active_streams: int) -> int:
        """Streams replaced per ``state()`` call: 1% of ``active_streams``, within [1, 20]."""
        if active_streams <= 0:
            return 0
        return min(STREAM_CHURN_MAX, max(1, _round_half_up(STREAM_CHURN_FRACTION * active_streams)))

    # ------------------------------------------------------- connection lifecycle

    def _make_connection(self, open_ts: int, upgraded_ts: int) -> _Conn:
        rng = self._rng
        conn = _Conn()
        conn.id = self._new_id()
        conn.hex = conn.id.hex()
        conn.peer_id = self._new_peer_id()
        conn.role = pb.INITIATOR if rng.random() < 0.5 else pb.RESPONDER
        family, remote_ip = self._remote_ip()
        local_ip = self._local_ip if family == "ip4" else "2a02:8071:5c3:7e00::1a"
        ephemeral = rng.randrange(32768, 61000)
        if conn.role == pb.INITIATOR:
            conn.local_addr = f"/{family}/{local_ip}/tcp/{ephemeral}"
            conn.remote_addr = f"/{family}/{remote_ip}/tcp/{LISTEN_PORT}"
        else:
            conn.local_addr = f"/{family}/{local_ip}/tcp/{LISTEN_PORT}"
            conn.remote_addr = f"/{family}/{remote_ip}/tcp/{ephemeral}"
        conn.muxer = "/yamux/1.0.0" if rng.random() < 0.8 else "/mplex/6.7.0"
        rtt_ns = int(rng.lognormvariate(math.log(40e6), 0.8))
        conn.base_latency_ns = min(max(rtt_ns, 200_000), 900_000_000)
        conn.open_ts = open_ts
        conn.upgraded_ts = upgraded_ts
        msg = conn.msg
        msg.id = conn.id
        msg.peer_id = conn.peer_id
        msg.status = _ACTIVE
        msg.transport_id = b"tcp"
        msg.endpoints.src_multiaddr = conn.local_addr
        msg.endpoints.dst_multiaddr = conn.remote_addr
        msg.timeline.open_ts = open_ts
        msg.timeline.upgraded_ts = upgraded_ts
        msg.role = conn.role
        msg.traffic.traffic_in.SetInParent()
        msg.traffic.traffic_out.SetInParent()
        conn.gin = msg.traffic.traffic_in
        conn.gout = msg.traffic.traffic_out
        msg.attribs.multiplexer = conn.muxer
        msg.attribs.encryption = "/noise"
        msg.latency_ns = conn.base_latency_ns
        msg.streams.SetInParent()
        self._conns[conn.id] = conn
        self._active.append(conn)
        return conn

    def _add_stream(self, conn: _Conn, open_ts: int) -> _Stream:
        rng = self._rng
        profile = rng.choices(_PROFILES, _PROFILE_WEIGHTS)[0]
        role = pb.INITIATOR if rng.random() < 0.5 else pb.RESPONDER
        stream = _Stream(self._new_id(), profile, role, open_ts, rng.lognormvariate(0.0, 0.75))
        conn.msg.streams.stream_ids.append(stream.id)
        msg = conn.msg.streams.streams.add()
        msg.id = stream.id
        msg.protocol = profile.protocol
        msg.role = role
        msg.traffic.traffic_in.SetInParent()
        msg.traffic.traffic_out.SetInParent()
        msg.conn.conn_id = conn.id
        msg.timeline.open_ts = open_ts
        msg.status = _ACTIVE
        stream.msg = msg
        stream.gin = msg.traffic.traffic_in
        stream.gout = msg.traffic.traffic_out
        conn.streams.append(stream)
        return stream

    def _adopt_connection(self) -> None:
        """A connection that exists when the source starts: no events, and the traffic
        of its life so far (its handshake, then each stream's packets since it opened,
        at the stream's rates), so that the first snapshot adds up however soon it
        comes: its totals cover the connection's age, its bandwidth only the window."""
        rng = self._rng
        start = self.start_ts
        age = 1_000 + int(rng.expovariate(1 / 600_000))
        open_ts = max(0, start - min(age, 6 * 3_600_000))
        upgraded_ts = min(start, open_ts + rng.randrange(10, 200))
        conn = self._make_connection(open_ts, upgraded_ts)
        self._handshake(conn)
        for _ in range(self.options.streams):
            stream = self._add_stream(conn, rng.randint(upgraded_ts, start))
            self._past_traffic(conn, stream, (start - stream.open_ts) / 1000.0)
        self._node_in_bytes += conn.in_bytes
        self._node_out_bytes += conn.out_bytes
        self._node_in_packets += conn.in_packets
        self._node_out_packets += conn.out_packets
        # Bandwidth counts from now: the first window holds only what it adds.
        conn.prev_in, conn.prev_out = conn.in_bytes, conn.out_bytes
        self._fill_connection_gauges(conn, 0)

    def _handshake(self, conn: _Conn) -> None:
        """Multistream-select, Noise XX, muxer negotiation, identify: bytes and packets."""
        rng = self._rng
        conn.in_packets += rng.randrange(5, 10)
        conn.out_packets += rng.randrange(5, 10)
        conn.in_bytes += rng.randrange(900, 1_600)
        conn.out_bytes += rng.randrange(900, 1_600)

    def _past_traffic(self, conn: _Conn, stream: _Stream, seconds: float) -> None:
        """``seconds`` of ``stream``'s traffic at its rates, added to it and its connection."""
        rng = self._rng
        n_in = int(stream.pps_in * seconds * (0.5 + rng.random()) + rng.random())
        n_out = int(stream.pps_out * seconds * (0.5 + rng.random()) + rng.random())
        stream.in_packets, stream.in_bytes = n_in, n_in * stream.size_in
        stream.out_packets, stream.out_bytes = n_out, n_out * stream.size_out
        gin, gout = stream.gin, stream.gout
        gin.cum_bytes, gin.cum_packets = stream.in_bytes, stream.in_packets
        gout.cum_bytes, gout.cum_packets = stream.out_bytes, stream.out_packets
        conn.in_bytes += stream.in_bytes + n_in * FRAMING_BYTES
        conn.out_bytes += stream.out_bytes + n_out * FRAMING_BYTES
        conn.in_packets += n_in
        conn.out_packets += n_out

    def _open_connection(self, now: int, not_before: int) -> _Conn:
        rng = self._rng
        upgraded_ts = max(not_before, now - rng.randrange(0, 50))
        open_ts = max(not_before, upgraded_ts - rng.randrange(8, 300))
        conn = self._make_connection(open_ts, upgraded_ts)
        self._handshake(conn)
        self._node_in_bytes += conn.in_bytes
        self._node_out_bytes += conn.out_bytes
        self._node_in_packets += conn.in_packets
        self._node_out_packets += conn.out_packets
        self._emit(
            events.CONNECTION_OPENED,
            now,
            {
                "peerId": conn.peer_id,
                "connId": conn.hex,
                "direction": _direction(conn.role),
                "localAddr": conn.local_addr,
                "remoteAddr": conn.remote_addr,
                "transport": "tcp",
                "multiplexer": conn.muxer,
                "encryption": "/noise",
                "openTs": open_ts,
            },
        )
        for _ in range(self.options.streams):
            stream = self._add_stream(conn, min(now, upgraded_ts + rng.randrange(0, 40)))
            self._announce_stream(conn, stream, now)
        return conn

    def _announce_stream(self, conn: _Conn, stream: _Stream, now: int) -> None:
        self._emit_stream_event(
            stream,
            events.STREAM_OPENED,
            now,
            {
                "peerId": conn.peer_id,
                "connId": conn.hex,
                "streamId": stream.hex,
                "protocol": stream.profile.protocol,
                "direction": _direction(stream.role),
                "openTs": stream.open_ts,
            },
        )

    def _close_stream(self, conn: _Conn, stream: _Stream, now: int) -> None:
        stream.status = _CLOSED
        stream.close_ts = now
        stream.msg.status = _CLOSED
        stream.msg.timeline.close_ts = now
        self._emit_stream_event(
            stream,
            events.STREAM_CLOSED,
            now,
            {
                "peerId": conn.peer_id,
                "connId": conn.hex,
                "streamId": stream.hex,
                "protocol": stream.profile.protocol,
                "direction": _direction(stream.role),
                "openTs": stream.open_ts,
                "closeTs": now,
                "bytesIn": stream.in_bytes,
                "bytesOut": stream.out_bytes,
                "status": "CLOSED",
                "reason": "closed",
            },
        )

    def _close_connection(self, conn: _Conn, now: int) -> None:
        for stream in conn.streams:
            self._close_stream(conn, stream, now)
        conn.status = _CLOSED
        conn.close_ts = now
        conn.msg.status = _CLOSED
        conn.msg.timeline.close_ts = now
        self._closed.append(conn)
        self._emit(
            events.CONNECTION_CLOSED,
            now,
            {
                "peerId": conn.peer_id,
                "connId": conn.hex,
                "direction": _direction(conn.role),
                "remoteAddr": conn.remote_addr,
                "openTs": conn.open_ts,
                "closeTs": now,
                "bytesIn": conn.in_bytes,
                "bytesOut": conn.out_bytes,
                "status": "CLOSED",
                "reason": "closed",
            },
        )

    # ------------------------------------------------------------- snapshot steps

    def _purge(self, now: int, window_ms: int) -> None:
        """Drop streams reported CLOSED last time and connections CLOSED for the lifetime."""
        for conn in self._stream_closed_on:
            if conn.status != _ACTIVE:
                continue
            streams = conn.streams
            for index in range(len(streams) - 1, -1, -1):
                if streams[index].status == _CLOSED:
                    del streams[index]
                    del conn.msg.streams.streams[index]
                    del conn.msg.streams.stream_ids[index]
        self._stream_closed_on = []
        still_dirty: list[_Conn] = []
        for conn in self._just_closed:
            if conn.streams:
                conn.streams = []
                del conn.msg.streams.streams[:]
                del conn.msg.streams.stream_ids[:]
            self._fill_connection_gauges(conn, window_ms)
            unreported = conn.in_bytes != conn.prev_in or conn.out_bytes != conn.prev_out
            if window_ms == 0 and unreported:
                still_dirty.append(conn)  # its last bytes still await a non-empty window
        self._just_closed = still_dirty
        lifetime = self.options.closed_connection_lifetime_ms
        closed = self._closed
        while closed and now - closed[0].close_ts >= lifetime:
            del self._conns[closed.popleft().id]

    def _advance_traffic(self, window_ms: int) -> None:
        """Add one window of simulated traffic to every ACTIVE stream and connection.

        Also writes every ACTIVE connection's gauges and latency, and the
        gauges of every stream whose values changed. Stream traffic is only
        ever added in a non-empty window and reported in that same snapshot,
        so a stream's ``inst_bw`` is simply the bytes added now per second; a
        stream that got nothing keeps its message untouched unless its
        ``inst_bw`` must drop back to 0.
        """
        rand = self._rng.random
        window_s = window_ms / 1000.0
        node_in_b = node_in_p = node_out_b = node_out_p = 0
        for conn in self._active:
            c_in_b = c_in_p = c_out_b = c_out_p = 0
            for s in conn.streams:
                if window_ms:
                    r = rand()
                    n_in = int(s.pps_in * window_s * (0.5 + r) + rand())
                    r2 = rand()
                    n_out = int(s.pps_out * window_s * (0.5 + r2) + rand())
                    if n_in or n_out:
                        b_in = n_in * s.size_in + int(r * s.size_in) if n_in else 0
                        b_out = n_out * s.size_out + int(r2 * s.size_out) if n_out else 0
                        s.in_bytes += b_in
                        s.in_packets += n_in
                        s.out_bytes += b_out
                        s.out_packets += n_out
                        c_in_b += b_in
                        c_in_p += n_in
                        c_out_b += b_out
                        c_out_p += n_out
                        gin = s.gin
                        gin.cum_bytes = s.in_bytes
                        gin.cum_packets = s.in_packets
                        gin.inst_bw = b_in * 1000 // window_ms
                        gout = s.gout
                        gout.cum_bytes = s.out_bytes
                        gout.cum_packets = s.out_packets
                        gout.inst_bw = b_out * 1000 // window_ms
                        s.busy = True
                        continue
                if s.busy:
                    s.gin.inst_bw = 0
                    s.gout.inst_bw = 0
                    s.busy = False
            c_in_b += c_in_p * FRAMING_BYTES
            c_out_b += c_out_p * FRAMING_BYTES
            conn.in_bytes += c_in_b
            conn.in_packets += c_in_p
            conn.out_bytes += c_out_b
            conn.out_packets += c_out_p
            node_in_b += c_in_b
            node_in_p += c_in_p
            node_out_b += c_out_b
            node_out_p += c_out_p
            self._fill_connection_gauges(conn, window_ms)
            conn.msg.latency_ns = int(conn.base_latency_ns * (0.9 + 0.2 * rand()))
        self._node_in_bytes += node_in_b
        self._node_in_packets += node_in_p
        self._node_out_bytes += node_out_b
        self._node_out_packets += node_out_p

    @staticmethod
    def _fill_connection_gauges(conn: _Conn, window_ms: int) -> None:
        gin, gout = conn.gin, conn.gout
        gin.cum_bytes = conn.in_bytes
        gin.cum_packets = conn.in_packets
        gout.cum_bytes = conn.out_bytes
        gout.cum_packets = conn.out_packets
        if window_ms:
            gin.inst_bw = (conn.in_bytes - conn.prev_in) * 1000 // window_ms
            gout.inst_bw = (conn.out_bytes - conn.prev_out) * 1000 // window_ms
            conn.prev_in = conn.in_bytes
            conn.prev_out = conn.out_bytes
        else:
            gin.inst_bw = 0
            gout.inst_bw = 0

    def _churn(self, now: int, not_before: int, window_ms: int) -> list[_Conn]:
        """Replace ``round(churn * connections)`` ACTIVE connections by new ones.

        Returns the new connections (also appended to the ACTIVE list).
        """
        rng = self._rng
        count = min(len(self._active), self._churned_per_call())
        if count:
            victims = sorted(rng.sample(range(len(self._active)), count))
            for index in victims:
                conn = self._active[index]
                self._close_connection(conn, now)
                self._just_closed.append(conn)
            gone = set(victims)
            self._active = [c for i, c in enumerate(self._active) if i not in gone]
        opened = [
            self._open_connection(now, not_before)
            for _ in range(self.options.connections - len(self._active))
        ]
        for conn in opened:
            self._fill_connection_gauges(conn, window_ms)
        return opened

    def _churn_streams(self, now: int, survivors: int) -> None:
        """Close a few streams and open a replacement on the same connection for each.

        Only the ``survivors`` oldest ACTIVE connections (not those opened in
        this snapshot) are candidates, one stream per connection at most.
        """
        count = self._stream_churn_count(survivors * self.options.streams)
        if not count:
            return
        rng = self._rng
        for index in rng.sample(range(survivors), min(count, survivors)):
            conn = self._active[index]
            stream = conn.streams[rng.randrange(len(conn.streams))]
            self._close_stream(conn, stream, now)
            replacement = self._add_stream(conn, now)
            self._announce_stream(conn, replacement, now)
            self._stream_closed_on.append(conn)

    # ------------------------------------------------------------------------ DHT

    def _build_dht(self) -> None:
        rng = self._rng
        start = self.start_ts
        for size in dht_bucket_sizes(self.options.dht_peers):
            bucket: list[_DhtPeer] = []
            for _ in range(size):
                roll = rng.random()
                status = (
                    _PEER_ACTIVE if roll < 0.88 else _PEER_MISSING if roll < 0.94
                    else _PEER_CANDIDATE
                )  # fmt: skip
                added = max(0, start - int(rng.expovariate(1 / 1_800_000)))
                peer = _DhtPeer(self._new_peer_id(), status, added)
                bucket.append(peer)
                self._dht_peers.append(peer)
            self._dht_buckets.append(bucket)

    def _evolve_dht(self, now: int) -> None:
        """Candidates get verified, a few peers go missing, some missing ones are replaced."""
        rng = self._rng
        for peer in self._dht_peers:
            roll = rng.random()
            if peer.status == _PEER_ACTIVE:
                if roll < 0.004:
                    peer.status = _PEER_MISSING
            elif peer.status == _PEER_CANDIDATE:
                if roll < 0.3:
                    peer.status = _PEER_ACTIVE
            elif roll < 0.08:
                peer.status = _PEER_ACTIVE
            elif roll < 0.16:
                peer.peer_id = self._new_peer_id()
                peer.status = _PEER_CANDIDATE
                peer.added_ts = now

    def _fill_dht(self, msg: pb.DHT, now: int) -> None:
        msg.protocol = DHT_PROTOCOL
        msg.enabled = True
        msg.start_ts = self.start_ts
        msg.params.k = DHT_K
        msg.params.alpha = DHT_ALPHA
        msg.params.beta = DHT_BETA
        msg.params.disjoint_paths = 0
        peer_cls = pb.DHT.PeerInDHT
        for cpl, bucket in enumerate(self._dht_buckets):
            out = msg.buckets.add()
            out.cpl = cpl
            out.peers.extend(
                peer_cls(
                    peer_id=peer.peer_id,
                    status=peer.status,
                    age_in_bucket=min(max(0, now - peer.added_ts), _UINT32_MAX),
                )
                for peer in sorted(bucket, key=lambda p: p.peer_id)
            )
        self._incoming.to_pb(msg.incoming_queries)
        self._outgoing.to_pb(msg.outgoing_queries)

    def _simulate_query(self) -> None:
        """One DHT RPC, just finished: count it and emit its event (content from the
        query generator, in the shape of the real introspector's, PROTOCOL.md §3)."""
        rng = self._query_rng
        peers = self._dht_peers
        if not peers:
            return
        peer = peers[rng.randrange(len(peers))]
        missing = peer.status == _PEER_MISSING
        self.dht_queries += 1
        now = self._clock_ms()
        if rng.random() < 0.45:
            direction, spec, counts = dht.INBOUND, events.INBOUND_DHT_QUERY, self._incoming
            message_type = rng.choices(_INBOUND_QUERY_TYPES, _INBOUND_QUERY_WEIGHTS)[0]
            result = dht.ERROR if rng.random() < 0.03 else dht.SUCCESS
            duration = min(int(rng.lognormvariate(math.log(2), 0.7)), 1_000)
            trigger = dht.API  # a request does not say why it was sent
        else:
            direction, spec, counts = dht.OUTBOUND, events.OUTBOUND_DHT_QUERY, self._outgoing
            message_type = rng.choices(_OUTBOUND_QUERY_TYPES, _OUTBOUND_QUERY_WEIGHTS)[0]
            roll = rng.random()
            if missing:
                result = dht.TIMEOUT if roll < 0.7 else dht.ERROR
            else:
                result = (
                    dht.SUCCESS if roll < 0.88 else dht.ERROR if roll < 0.94 else dht.TIMEOUT
                )  # fmt: skip
            if result == dht.TIMEOUT:
                duration = DHT_QUERY_TIMEOUT_MS + rng.randrange(0, 25)
            else:
                duration = min(
                    int(rng.lognormvariate(math.log(60), 0.8)) + 1, DHT_QUERY_TIMEOUT_MS - 1
                )
            refresh = message_type == "FIND_NODE" and rng.random() < DHT_REFRESH_SHARE
            trigger = dht.DISCOVERY if refresh else dht.API
        if message_type == "FIND_NODE":
            target = peer_id_from_key(rng.randbytes(32))
        else:
            target = _MULTIHASH_SHA256 + rng.randbytes(32).hex()
        counts.count(result)
        content = dht.query_content(
            direction=direction,
            peer=peer.peer_id,
            message_type=message_type,
            target=target,
            total_time_ms=duration,
            trigger=trigger,
            result=result,
            query_id=rng.randbytes(32).hex(),
        )
        self._emit(spec, max(0, now - duration), content)

    # ------------------------------------------------------- IntrospectionSource

    def runtime(self) -> pb.Runtime:
        """Static metadata: ``implementation`` "py-libp2p (synthetic)", the installed
        libp2p version, this machine's platform, the simulated peer id (base58),
        and every event type this source emits."""
        return pb.Runtime(
            implementation=IMPLEMENTATION,
            version=libp2p_version(),
            platform=platform_description(),
            peer_id=self.peer_id,
            event_types=[spec.to_pb() for spec in self._specs],
        )

    def set_event_sink(self, sink: EventSink | None) -> None:
        """Register the synchronous event sink (``None`` detaches); every event goes there.

        Exceptions raised by the sink are logged and swallowed.
        """
        self._sink = sink

    def state(self) -> pb.State:
        """Advance the simulation to now and return one snapshot.

        ``instant_ts`` = the clock's now (ms since epoch); ``start_ts`` = the
        previous call's ``instant_ts`` (creation time for the first call);
        ``snapshot_duration_ms`` = their difference, the window of every
        ``inst_bw`` (bytes per second). Emits the connection and stream events
        of the changes it makes (see the module docstring).
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
        self._purge(now, window_ms)
        self._advance_traffic(window_ms)
        opened = self._churn(now, min(start, now), window_ms)
        self._churn_streams(now, len(self._active) - len(opened))
        if self._dht_peers:
            self._evolve_dht(now)

        state = pb.State(
            instant_ts=now, start_ts=start, snapshot_duration_ms=min(window_ms, _UINT32_MAX)
        )
        subsystems = pb.Subsystems()
        if self._dht_peers:
            self._fill_dht(subsystems.dht, now)
        traffic_in = state.traffic.traffic_in
        traffic_in.cum_bytes = self._node_in_bytes
        traffic_in.cum_packets = self._node_in_packets
        traffic_out = state.traffic.traffic_out
        traffic_out.cum_bytes = self._node_out_bytes
        traffic_out.cum_packets = self._node_out_packets
        if window_ms:
            traffic_in.inst_bw = (self._node_in_bytes - self._node_prev_in) * 1000 // window_ms
            traffic_out.inst_bw = (self._node_out_bytes - self._node_prev_out) * 1000 // window_ms
            self._node_prev_in = self._node_in_bytes
            self._node_prev_out = self._node_out_bytes
        traffic_in.SetInParent()
        traffic_out.SetInParent()
        self._last_instant = now
        return assemble_state(
            state.SerializeToString(),
            [conn.msg.SerializeToString() for conn in self._conns.values()],
            subsystems.SerializeToString(),
        )

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
        take the one path, in order). Queries are
        evenly spaced on trio's clock, ``1 / events_per_second`` s apart; after
        a stall the missed ones are caught up, but never more than one
        second's worth. Returns at once when ``events_per_second`` is 0 or the
        node has no DHT.
        """
        task_status.started()
        rate = self.options.events_per_second
        if rate <= 0 or not self._dht_peers:
            return
        interval = 1.0 / rate
        deadline = trio.current_time()
        while True:
            deadline += interval
            now = trio.current_time()
            if now - deadline > 1.0:
                deadline = now
            await trio.sleep_until(deadline)
            self._simulate_query()
