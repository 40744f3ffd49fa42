"""The shape of the simulated node (:class:`SyntheticOptions`) and its validation.

:data:`SHAPE_OPTIONS` defines, once, each shape a user may ask for (default, help,
accepted range): ``SyntheticOptions``' defaults and checks and the flags of
``serve --source mock`` (``libp2p_introspection.cli.serving``) are derived from it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.config import DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
from libp2p_introspection.protocol.limits import Option
from libp2p_introspection.server.sources.synthetic.dht import (
    DHT_K,
    DHT_MAX_BUCKETS,
    dht_bucket_sizes,
)

#: Topics a simulated router may know.
MAX_TOPICS = 1_000


def _most_dht_peers() -> int:
    """The most peers a routing table of ``DHT_MAX_BUCKETS`` buckets holds."""
    low, high = 0, DHT_K * DHT_MAX_BUCKETS
    while low < high:  # bucket count never falls as peers grow
        middle = (low + high + 1) // 2
        if len(dht_bucket_sizes(middle)) <= DHT_MAX_BUCKETS:
            low = middle
        else:
            high = middle - 1
    return low


#: Peers a simulated routing table may hold (5,051 with k = 20 and 256 buckets).
MAX_DHT_PEERS = _most_dht_peers()


def _finite(value: Any) -> str | None:
    return None if math.isfinite(value) else f"must be a finite number, got {value!r}"


#: The node's shapes a user may ask for (``serve --source mock``'s flags), in ``--help``
#: order: name (the ``SyntheticOptions`` field), kind, default, unit, help, range.
SHAPE_OPTIONS: tuple[Option, ...] = (
    Option("connections", int, 50, "connections", "Connections of the synthetic node.",
           minimum=0),
    Option("streams", int, 4, "streams", "Streams per connection.", minimum=0),
    Option("dht_peers", int, 40, "peers",
           "Peers in the DHT routing table (0: no DHT).", minimum=0, maximum=MAX_DHT_PEERS),
    Option("events_per_second", float, 20.0, "events/s", "Rate of DHT query events.",
           minimum=0, check=_finite),
    Option("churn", float, 0.02, "", "Fraction of connections replaced per snapshot.",
           minimum=0, maximum=1),
    Option("pubsub_topics", int, 8, "topics",
           "Topics of the gossipsub router (0: no pubsub).", minimum=0, maximum=MAX_TOPICS),
    Option("resource_manager", bool, True, "",
           "Run a resource manager (its scopes' usage and limits).",
           flag="--resource-manager/--no-resource-manager"),
)  # fmt: skip

_SHAPES = {option.name: option for option in SHAPE_OPTIONS}


def _shape(name: str) -> Any:
    return _SHAPES[name].default


def _check_shape(option: Option, value: object) -> None:
    """``TypeError`` for a value of the wrong type, ``ValueError`` for one out of range,
    naming the field."""
    reason = option.refusal(value)
    if reason is None:
        return
    message = reason.format(f"SyntheticOptions.{option.name}")
    if option.kind is bool:
        wrong_type = not isinstance(value, bool)
    else:
        numbers = int if option.kind is int else int | float
        wrong_type = isinstance(value, bool) or not isinstance(value, numbers)
    raise (TypeError if wrong_type else ValueError)(message)


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

    connections: int = _shape("connections")
    streams: int = _shape("streams")
    dht_peers: int = _shape("dht_peers")
    events_per_second: float = _shape("events_per_second")
    churn: float = _shape("churn")
    seed: int = 0
    closed_connection_lifetime_ms: int = DEFAULT_CLOSED_CONNECTION_LIFETIME_MS
    clock_ms: Callable[[], int] | None = None
    max_stream_events_per_snapshot: int = 100
    pubsub_topics: int = _shape("pubsub_topics")
    resource_manager: bool = _shape("resource_manager")
    max_subscription_events_per_snapshot: int = 20

    def __post_init__(self) -> None:
        for option in SHAPE_OPTIONS:
            _check_shape(option, getattr(self, option.name))
        _check_int("seed", self.seed, minimum=-(2**63))
        _check_int("closed_connection_lifetime_ms", self.closed_connection_lifetime_ms)
        _check_int("max_stream_events_per_snapshot", self.max_stream_events_per_snapshot)
        _check_int(
            "max_subscription_events_per_snapshot", self.max_subscription_events_per_snapshot
        )
        if self.clock_ms is not None and not callable(self.clock_ms):
            raise TypeError("SyntheticOptions.clock_ms must be callable or None")
