"""Counters the demo keeps about its own activity (:class:`NodeStats`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class NodeStats:
    """What one demo node did, cumulated over all its incarnations.

    Protocol keys are protocol ids (e.g. ``/ipfs/ping/1.0.0``). These counters
    are kept by the demo itself; they are a convenience for tests and logs and
    independent from what an introspector reads from the host.
    """

    #: Streams this node opened for demo sessions (ping, echo, bulk), by
    #: protocol id. Streams py-libp2p opens by itself (identify, DHT queries)
    #: are not counted here; DHT operations are counted in :attr:`dht_ops`.
    streams_out: Counter[str] = field(default_factory=Counter)
    #: Streams this node accepted, by protocol id (ping, echo, bulk, kad).
    streams_in: Counter[str] = field(default_factory=Counter)
    #: Demo sessions that ended with an error (reset, dial failure, timeout).
    sessions_failed: int = 0
    #: Payload bytes this node wrote / read on echo and bulk streams.
    payload_bytes_sent: int = 0
    payload_bytes_received: int = 0
    #: DHT operations this node issued, by kind (``find_peer``, ``put_value``...).
    dht_ops: Counter[str] = field(default_factory=Counter)
    #: DHT operations that raised or timed out.
    dht_ops_failed: int = 0
    #: How many times the node's host was started (1 + number of rejoins).
    starts: int = 0
    #: How many times the node left the network through churn.
    churned: int = 0
    #: Pubsub messages this node published, by topic.
    pubsub_published: Counter[str] = field(default_factory=Counter)
    #: Pubsub publications that raised.
    pubsub_failed: int = 0
    #: Pubsub messages of other nodes this node's subscriptions delivered, by topic.
    pubsub_received: Counter[str] = field(default_factory=Counter)

    def protocols(self) -> set[str]:
        """Every protocol id this node opened or accepted a stream on."""
        return {p for p, n in (self.streams_out + self.streams_in).items() if n > 0}
