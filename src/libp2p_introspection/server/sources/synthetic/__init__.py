"""A synthetic libp2p node for load tests and benchmarks: ``serve --source mock``.

:class:`SyntheticSource` simulates a py-libp2p node without any networking:
nothing is dialed, every address is a string. It looks like
:class:`~libp2p_introspection.introspector.HostIntrospector` on the wire: the
same event type names and property schemas
(:mod:`libp2p_introspection.protocol.events`), the same id scheme (one
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
  ``outgoing_queries`` count the queries of :meth:`simulate_queries` (one per
  DHT query event; as with the real introspector, no cancelled query is
  simulated: it would have no event and no count).

Events (all ``ts`` in ms since epoch) go to the sink registered with
:meth:`set_event_sink`; while the server runs the source
(:meth:`SyntheticSource.run`, the snapshot clock of
:class:`~libp2p_introspection.abc.SampledSource` beside
:meth:`SyntheticSource.simulate_queries`), that is the outlet's ``publish_event``:

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
* during :meth:`simulate_queries`: ``InboundDHTQuery``/``OutboundDHTQuery`` at
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

Modules: :mod:`.options` (the shape and its validation), :mod:`.ids` (peer
ids, element ids, addresses), :mod:`.model` (connections, streams and their
traffic), :mod:`.connections` (their lives, churn and events), :mod:`.dht`
(the routing table and the queries), :mod:`.source` (the
``IntrospectionSource`` putting them together). None imports py-libp2p.

Performance: every connection and stream keeps its ``pb.Connection`` /
``pb.Stream`` message for its whole life; a snapshot only updates the
counters in place and serializes the connection messages one by one into
the ``State``'s bytes (:meth:`SyntheticSource.encoded_state`, the server's
path), never copying them.
"""

from libp2p_introspection.server.sources.synthetic.dht import dht_bucket_sizes
from libp2p_introspection.server.sources.synthetic.ids import base58_encode, peer_id_from_key
from libp2p_introspection.server.sources.synthetic.options import SyntheticOptions
from libp2p_introspection.server.sources.synthetic.source import IMPLEMENTATION, SyntheticSource

__all__ = [
    "IMPLEMENTATION",
    "SyntheticOptions",
    "SyntheticSource",
    "base58_encode",
    "dht_bucket_sizes",
    "peer_id_from_key",
]
