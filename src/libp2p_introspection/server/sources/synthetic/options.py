"""The shape of the simulated node (:class:`SyntheticOptions`) and its validation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from libp2p_introspection.config import DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
from libp2p_introspection.server.sources.synthetic.dht import (
    DHT_K,
    DHT_MAX_BUCKETS,
    dht_bucket_sizes,
)

#: Topics a simulated router may know.
MAX_TOPICS = 1_000


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
    :param pubsub_topics: topics of the node's gossipsub router (0: the node runs no
        pubsub: no ``Subsystems.pubsub`` and no pubsub event types).
    :param resource_manager: whether the node runs py-libp2p's resource manager
        (``Subsystems.resources``).
    :param max_subscription_events_per_snapshot: ``PubsubSubscriptionChanged`` events
        per ``state()`` call at most (peers that connect subscribe to topics; the
        rest are counted, not emitted).
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
    pubsub_topics: int = 8
    resource_manager: bool = True
    max_subscription_events_per_snapshot: int = 20

    def __post_init__(self) -> None:
        _check_int("connections", self.connections)
        _check_int("streams", self.streams)
        _check_int("dht_peers", self.dht_peers)
        _check_int("seed", self.seed, minimum=-(2**63))
        _check_int("closed_connection_lifetime_ms", self.closed_connection_lifetime_ms)
        _check_int("max_stream_events_per_snapshot", self.max_stream_events_per_snapshot)
        _check_int("pubsub_topics", self.pubsub_topics)
        if self.pubsub_topics > MAX_TOPICS:
            raise ValueError(
                f"SyntheticOptions.pubsub_topics must be <= {MAX_TOPICS}, got {self.pubsub_topics}"
            )
        _check_int(
            "max_subscription_events_per_snapshot", self.max_subscription_events_per_snapshot
        )
        if not isinstance(self.resource_manager, bool):
            raise TypeError(
                f"SyntheticOptions.resource_manager must be a bool, got {self.resource_manager!r}"
            )
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

