"""The simulated node's Kademlia DHT: its routing table and the queries it answers and sends.

``/ipfs/kad/1.0.0``, k=20, alpha=3, beta=3; peers laid out over
common-prefix-length buckets as in a real routing table (the cpl is
simulated, not derived from the peers' keys). Query events have the content
of the real introspector's (PROTOCOL.md §3, built by
:mod:`libp2p_introspection.protocol.dht`); times are ms.
"""

from __future__ import annotations

import math
import random

from libp2p_introspection.protocol import dht, events, pb
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.dht import QueryCounts
from libp2p_introspection.protocol.events import EventEmitter
from libp2p_introspection.server.sources.synthetic.ids import peer_id_from_key, random_peer_id

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

_UINT32_MAX = 0xFFFFFFFF
_INBOUND_QUERY_TYPES = ("FIND_NODE", "GET_PROVIDERS", "GET_VALUE", "ADD_PROVIDER", "PUT_VALUE")
_INBOUND_QUERY_WEIGHTS = (60, 16, 9, 9, 6)
_OUTBOUND_QUERY_TYPES = _INBOUND_QUERY_TYPES
_OUTBOUND_QUERY_WEIGHTS = (66, 14, 8, 8, 4)

_PEER_ACTIVE = pb.DHT.PeerInDHT.ACTIVE
_PEER_MISSING = pb.DHT.PeerInDHT.MISSING
_PEER_CANDIDATE = pb.DHT.PeerInDHT.CANDIDATE


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


class _DhtPeer:
    """One routing-table entry; replaced in place (new peer id, new ``added_ts``)."""

    __slots__ = ("added_ts", "peer_id", "status")

    def __init__(self, peer_id: str, status: int, added_ts: int) -> None:
        self.peer_id = peer_id
        self.status = status
        self.added_ts = added_ts


class SimulatedDht:
    """A routing table of ``peers`` peers and the query counters of its RPCs.

    :param rng: the node's generator (the table and its evolution draw from it).
    :param query_rng: the queries' own generator, so that the sequence of query
        events is fixed by the seed whatever the timing of snapshots.
    :param start_ts: when the DHT started, ms since epoch.
    :param clock_ms: stamps the queries (ms since epoch).
    :param emitter: where the query events go.
    """

    def __init__(
        self, peers: int, *, rng: random.Random, query_rng: random.Random, start_ts: int,
        clock_ms: ClockMs, emitter: EventEmitter,
    ) -> None:  # fmt: skip
        self._rng = rng
        self._query_rng = query_rng
        self._clock_ms = clock_ms
        self._emitter = emitter
        self.start_ts = start_ts
        #: Queries simulated (events emitted or not).
        self.queries = 0
        self.incoming = QueryCounts()
        self.outgoing = QueryCounts()
        self._buckets: list[list[_DhtPeer]] = []
        self._peers: list[_DhtPeer] = []
        for size in dht_bucket_sizes(peers):
            bucket: list[_DhtPeer] = []
            for _ in range(size):
                roll = rng.random()
                status = (
                    _PEER_ACTIVE if roll < 0.88 else _PEER_MISSING if roll < 0.94
                    else _PEER_CANDIDATE
                )  # fmt: skip
                added = max(0, start_ts - int(rng.expovariate(1 / 1_800_000)))
                peer = _DhtPeer(random_peer_id(rng), status, added)
                bucket.append(peer)
                self._peers.append(peer)
            self._buckets.append(bucket)

    @property
    def enabled(self) -> bool:
        """Whether the node has a DHT (a routing table of at least one peer)."""
        return bool(self._peers)

    def evolve(self, now: int) -> None:
        """Candidates get verified, a few peers go missing, some missing ones are replaced."""
        rng = self._rng
        for peer in self._peers:
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
                peer.peer_id = random_peer_id(rng)
                peer.status = _PEER_CANDIDATE
                peer.added_ts = now

    def fill(self, msg: pb.DHT, now: int) -> None:
        """Write ``State.subsystems.dht`` at ``now`` (ms since epoch)."""
        msg.protocol = DHT_PROTOCOL
        msg.enabled = True
        msg.start_ts = self.start_ts
        msg.params.k = DHT_K
        msg.params.alpha = DHT_ALPHA
        msg.params.beta = DHT_BETA
        msg.params.disjoint_paths = 0
        peer_cls = pb.DHT.PeerInDHT
        for cpl, bucket in enumerate(self._buckets):
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
        self.incoming.to_pb(msg.incoming_queries)
        self.outgoing.to_pb(msg.outgoing_queries)

    def simulate_query(self) -> None:
        """One DHT RPC, just finished: count it and emit its event (content from the
        query generator, in the shape of the real introspector's, PROTOCOL.md §3)."""
        rng = self._query_rng
        peers = self._peers
        if not peers:
            return
        peer = peers[rng.randrange(len(peers))]
        missing = peer.status == _PEER_MISSING
        self.queries += 1
        now = self._clock_ms()
        if rng.random() < 0.45:
            direction, spec, counts = dht.INBOUND, events.INBOUND_DHT_QUERY, self.incoming
            message_type = rng.choices(_INBOUND_QUERY_TYPES, _INBOUND_QUERY_WEIGHTS)[0]
            result = dht.ERROR if rng.random() < 0.03 else dht.SUCCESS
            duration = min(int(rng.lognormvariate(math.log(2), 0.7)), 1_000)
            trigger = dht.API  # a request does not say why it was sent
        else:
            direction, spec, counts = dht.OUTBOUND, events.OUTBOUND_DHT_QUERY, self.outgoing
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
        self._emitter.emit(spec, content, ts=max(0, now - duration))
