"""Configuration of the demo network (:class:`DemoOptions`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from libp2p_introspection.demo.node import DemoNode

#: Hook called with the observed node once its host listens and its DHT runs,
#: before any other node exists (so before any connection or stream). It may be
#: a plain function or a coroutine function; the network waits for it.
ObservedReadyHook = Callable[["DemoNode"], Awaitable[None] | None]
#: Hook called with a non-observed node each time it (re)starts, once its host
#: listens and its DHT runs, before it connects to anyone; plain or coroutine
#: function, waited for. A churned node comes back with a new host: the hook is
#: called again with it.
NodeReadyHook = Callable[["DemoNode"], Awaitable[None] | None]


@dataclass(frozen=True)
class DemoOptions:
    """Knobs of :class:`~libp2p_introspection.demo.DemoNetwork`.

    Rates are Poisson means (events per second, network-wide); sizes are bytes;
    durations are seconds. Defaults give a lively 4-node network that stays
    well under one CPU core.
    The CLI's demo flags (``--nodes``, ``--no-churn``, ``--seed``) take their
    defaults and bounds from here.
    """

    #: The fewest nodes a network has: the observed one and one peer.
    MIN_NODES: ClassVar[int] = 2
    #: Total number of nodes, the observed one included (at least :attr:`MIN_NODES`).
    nodes: int = 4
    #: Seed for every random choice (peer identities, who talks to whom, sizes,
    #: intervals). ``None`` picks a fresh seed. Timing is not reproducible.
    seed: int | None = None
    #: Loopback address every node listens on (TCP, port chosen by the OS).
    listen_ip: str = "127.0.0.1"
    #: Besides its link to the observed node, each joining node dials up to this
    #: many random online nodes. ``nodes - 2`` or more gives a full mesh.
    extra_links: int = 3
    #: Make the last non-observed node speak only mplex (needs ``nodes >= 3``),
    #: so the observed node shows connections with both muxers. Off by default:
    #: in py-libp2p 0.8.1 mplex writes to the Noise session without a lock of
    #: their own, so a write cancelled while it waits for the TCP write lock has
    #: already used its Noise nonce; the peer then fails to authenticate every
    #: later frame, and that error escapes mplex's reader task and stops the
    #: whole host (seen in the soak test, about one run in three). Yamux writes
    #: under its own lock and is not affected.
    mplex_node: bool = False

    #: Stream sessions (ping / echo / bulk) started per second, network-wide.
    work_rate: float = 3.0
    #: Fraction of sessions that involve the observed node (as either end).
    observed_share: float = 0.7
    #: Relative weights of the session kinds: ping, echo, bulk.
    session_weights: tuple[float, float, float] = (0.3, 0.4, 0.3)
    #: Size range of one bulk transfer, bytes.
    bulk_min_bytes: int = 4 * 1024
    bulk_max_bytes: int = 256 * 1024
    #: Pace of one bulk transfer, bytes per second (keeps streams visible for a
    #: while and CPU bursts small). ``0`` sends as fast as possible.
    bulk_rate_bytes_per_s: int = 512 * 1024
    #: Upper bound on concurrently running sessions (new ones are skipped).
    max_sessions: int = 24

    #: DHT operations (find_peer / put_value / get_value / provide /
    #: find_providers / routing-table refresh) started per second, network-wide.
    dht_rate: float = 1.0
    #: Fraction of DHT operations issued by the observed node; the others are
    #: issued by other nodes and reach the observed node as inbound queries.
    observed_dht_share: float = 0.35

    #: Gossipsub topics. Node ``i`` subscribes to every topic but the one at index
    #: ``i % len(pubsub_topics)`` (the observed node: all but the first), so each
    #: node also sees a topic it is not subscribed to.
    pubsub_topics: tuple[str, ...] = ("demo/blocks", "demo/transactions", "demo/chat")
    #: Gossipsub messages published per second, network-wide, by a random online
    #: node on a random topic (one of its own, or any: fanout).
    pubsub_rate: float = 2.0
    #: Size range of one pubsub message, bytes.
    pubsub_min_bytes: int = 32
    pubsub_max_bytes: int = 2048

    #: Whether non-observed nodes now and then leave and rejoin.
    churn: bool = True
    #: Mean seconds between churn events; each interval is drawn uniformly from
    #: ``[2/3, 4/3]`` of it (so the default gives 10-20 s).
    churn_interval_s: float = 15.0
    #: Mean seconds a churned node stays offline (uniform in ``[1/2, 3/2]``).
    churn_downtime_s: float = 2.0

    #: Seconds between the observed node's AutoNAT checks (it asks its online
    #: peers to dial it back; the first check runs once the network is up).
    reachability_interval_s: float = 30.0

    #: See :data:`ObservedReadyHook`.
    on_observed_ready: ObservedReadyHook | None = None
    #: See :data:`NodeReadyHook`.
    on_node_ready: NodeReadyHook | None = None
    #: Demote py-libp2p's known-benign warnings caused by demo traffic and churn
    #: (e.g. a peer closing a DHT stream, a dial to a node that just left) to
    #: DEBUG while the network runs. Other warnings are untouched.
    quiet_libp2p_warnings: bool = True

    def __post_init__(self) -> None:
        if self.nodes < self.MIN_NODES:
            raise ValueError(f"nodes must be >= {self.MIN_NODES}, got {self.nodes}")
        if self.extra_links < 0:
            raise ValueError("extra_links must be >= 0")
        for name in ("work_rate", "dht_rate", "pubsub_rate"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        for name in ("observed_share", "observed_dht_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if len(self.session_weights) != 3 or any(w < 0 for w in self.session_weights):
            raise ValueError("session_weights must be three non-negative numbers")
        if not 0 < self.bulk_min_bytes <= self.bulk_max_bytes:
            raise ValueError("need 0 < bulk_min_bytes <= bulk_max_bytes")
        if not 0 < self.pubsub_min_bytes <= self.pubsub_max_bytes:
            raise ValueError("need 0 < pubsub_min_bytes <= pubsub_max_bytes")
        if len(set(self.pubsub_topics)) != len(self.pubsub_topics):
            raise ValueError("pubsub_topics must be distinct")
        if self.bulk_rate_bytes_per_s < 0:
            raise ValueError("bulk_rate_bytes_per_s must be >= 0")
        if self.max_sessions < 1:
            raise ValueError("max_sessions must be >= 1")
        if self.reachability_interval_s <= 0:
            raise ValueError("reachability_interval_s must be > 0")
        if self.churn_interval_s <= 0 or self.churn_downtime_s < 0:
            raise ValueError("churn_interval_s must be > 0 and churn_downtime_s >= 0")
