"""The event vocabulary every source shares, and emission to a sink.

The vocabulary is in two modules, re-exported here: the types
(:mod:`~libp2p_introspection.protocol.event_specs`) and the content builders
(:mod:`~libp2p_introspection.protocol.event_payloads`); this module builds
``pb.Event`` messages (:func:`build_event`) and emits them (:class:`EventEmitter`).

A live host's introspector and the synthetic node emit the same event types
with the same content; nothing in these modules knows py-libp2p.

Every event is a ``pb.Event`` whose ``type`` carries the type's name and its
property types, whose ``ts`` is ms since the Unix epoch (the introspector's
clock at emission) and whose ``content`` is a JSON object whose top-level keys
are exactly the declared property names.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.event_payloads import (
    Ending,
    connection_closed,
    connection_opened,
    direction_name,
    listen_addrs_changed,
    peer_identified,
    pubsub_mesh_change,
    pubsub_subscription_changed,
    reachability_changed,
    stream_closed,
    stream_opened,
)
from libp2p_introspection.protocol.event_specs import (
    CONNECTION_CLOSED,
    CONNECTION_EVENTS,
    CONNECTION_OPENED,
    DHT_EVENTS,
    DHT_QUERY_PROPERTIES,
    INBOUND_DHT_QUERY,
    JSON,
    LISTEN_ADDRS_CHANGED,
    MESH_INBOUND,
    MESH_OUTBOUND,
    MULTIADDR,
    NODE_EVENTS,
    NUMBER,
    OUTBOUND_DHT_QUERY,
    PEER_IDENTIFIED,
    PEERID,
    PUBSUB_EVENTS,
    PUBSUB_GRAFT,
    PUBSUB_MESH_PROPERTIES,
    PUBSUB_PRUNE,
    PUBSUB_SUBSCRIPTION_CHANGED,
    REACHABILITY_CHANGED,
    STREAM_CLOSED,
    STREAM_OPENED,
    STRING,
    TIME,
    EventSpec,
    Property,
    PropertyType,
)

__all__ = [
    "CONNECTION_CLOSED",
    "CONNECTION_EVENTS",
    "CONNECTION_OPENED",
    "DHT_EVENTS",
    "DHT_QUERY_PROPERTIES",
    "INBOUND_DHT_QUERY",
    "JSON",
    "LISTEN_ADDRS_CHANGED",
    "MESH_INBOUND",
    "MESH_OUTBOUND",
    "MULTIADDR",
    "NODE_EVENTS",
    "NUMBER",
    "OUTBOUND_DHT_QUERY",
    "PEERID",
    "PEER_IDENTIFIED",
    "PUBSUB_EVENTS",
    "PUBSUB_GRAFT",
    "PUBSUB_MESH_PROPERTIES",
    "PUBSUB_PRUNE",
    "PUBSUB_SUBSCRIPTION_CHANGED",
    "REACHABILITY_CHANGED",
    "STREAM_CLOSED",
    "STREAM_OPENED",
    "STRING",
    "TIME",
    "Ending",
    "EventEmitter",
    "EventSink",
    "EventSpec",
    "Property",
    "PropertyType",
    "build_event",
    "connection_closed",
    "connection_opened",
    "direction_name",
    "listen_addrs_changed",
    "peer_identified",
    "pubsub_mesh_change",
    "pubsub_subscription_changed",
    "reachability_changed",
    "stream_closed",
    "stream_opened",
]

logger = logging.getLogger(__name__)

#: Called by a source, synchronously and without blocking, once per event as
#: it happens (while the server runs a sampled source, it is the hub's
#: ``SourceOutlet.publish_event``). ``Event.type`` carries at least the type's name; it may carry
#: the property types too (the server then uses them for clients that were not
#: told about that type in the ``Runtime``). ``Event.ts`` is ms since epoch.
EventSink = Callable[[pb.Event], None]


def build_event(spec: EventSpec, ts: int, properties: Mapping[str, Any]) -> pb.Event:
    """Build a ``pb.Event`` of type ``spec``.

    :param ts: ms since epoch.
    :param properties: exactly the spec's property names -> JSON-serializable values.
    :raises ValueError: if the keys differ from the declared property names.
    """
    if set(properties) != set(spec.property_names):
        declared = sorted(spec.property_names)
        raise ValueError(f"{spec.name}: properties {sorted(properties)} != declared {declared}")
    ordered = {name: properties[name] for name in spec.property_names}
    event = pb.Event(ts=ts, content=json.dumps(ordered, separators=(",", ":")))
    event.type.CopyFrom(spec.to_pb())
    return event


#: Events an emitter keeps until its first sink is registered, the newest ones.
FIRST_SINK_BACKLOG = 1024


class EventEmitter:
    """Delivers events to the registered sink, synchronously and never raising.

    The sink is called inline from the source's own code (for a live host:
    py-libp2p callbacks, notifees and hooks); an exception from it or from
    building the event is logged and swallowed so it never reaches the caller.

    Until the first sink is registered, events are kept (the last
    :data:`FIRST_SINK_BACKLOG`) and that sink receives them first: a host
    introspected from its start whose server starts later (``demo --all``'s
    nodes connect, identify and bootstrap before their servers run) loses none
    of its first moments, and the metrics counted from events (identify
    exchanges, connections) agree with the snapshots' totals since attach. Once
    a sink was removed, events without one are dropped.

    :param clock_ms: stamps events emitted without a ``ts`` (ms since epoch).
    :param specs: every type this source may emit (its ``Runtime.event_types``).
    """

    def __init__(self, clock_ms: ClockMs, specs: Sequence[EventSpec]) -> None:
        self._clock_ms = clock_ms
        self._sink: EventSink | None = None
        self._backlog: deque[pb.Event] | None = deque(maxlen=FIRST_SINK_BACKLOG)
        self.specs: tuple[EventSpec, ...] = tuple(specs)

    @property
    def sink(self) -> EventSink | None:
        """The current sink, or ``None``."""
        return self._sink

    def set_sink(self, sink: EventSink | None) -> None:
        """Register (or with ``None`` remove) the sink; the first one registered gets
        the events emitted before it first, in order."""
        self._sink = sink
        backlog = self._backlog
        if sink is None or backlog is None:
            return
        self._backlog = None
        for event in backlog:
            try:
                sink(event)
            except Exception:
                logger.exception("introspection event sink failed for %s", event.type.name)

    def emit(
        self, spec: EventSpec, properties: Mapping[str, Any], *, ts: int | None = None
    ) -> None:
        """Send one event of type ``spec`` to the sink (before the first one: keep it
        for that one; after a sink was removed: drop it).

        :param ts: its ``Event.ts`` (ms since epoch), for an event about something
            that started earlier (a DHT RPC is stamped when it was sent);
            default: the clock's now.
        """
        sink, backlog = self._sink, self._backlog
        if sink is None and backlog is None:
            return
        try:
            event = build_event(spec, self._clock_ms() if ts is None else ts, properties)
            if sink is not None:
                sink(event)
            elif backlog is not None:
                backlog.append(event)
        except Exception:
            logger.exception("introspection event sink failed for %s", spec.name)
