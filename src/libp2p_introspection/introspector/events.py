"""Event types the introspector emits, and their emission to the sink.

Every event is a ``pb.Event`` whose ``type`` carries the type's name and its
property types, whose ``ts`` is ms since the Unix epoch (the introspector's
clock at emission) and whose ``content`` is a JSON object whose top-level keys
are exactly the declared property names.

Property conventions: ``peerId`` is a base58 peer id; ``connId``/``streamId``
are the lowercase hex of the ``Connection.id``/``Stream.id`` bytes seen in
snapshots; ``*Addr`` are multiaddr strings; ``*Ts`` are ms since epoch;
``bytes*`` are byte counts; ``durationMs`` is ms.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.abc import EventSink
from libp2p_introspection.introspector.clock import ClockMs
from libp2p_introspection.protocol import pb

logger = logging.getLogger(__name__)

PropertyType = pb.EventType.EventProperty.PropertyType
STRING = pb.EventType.EventProperty.STRING
NUMBER = pb.EventType.EventProperty.NUMBER
TIME = pb.EventType.EventProperty.TIME
PEERID = pb.EventType.EventProperty.PEERID
MULTIADDR = pb.EventType.EventProperty.MULTIADDR
JSON = pb.EventType.EventProperty.JSON


@dataclass(frozen=True)
class EventSpec:
    """One event type: its name and its ``(property name, PropertyType)`` pairs, in order."""

    name: str
    properties: tuple[tuple[str, int], ...]

    @property
    def property_names(self) -> tuple[str, ...]:
        """The property names, which are the JSON content's keys."""
        return tuple(name for name, _ in self.properties)

    def to_pb(self) -> pb.EventType:
        """The ``EventType`` message declaring this type (for ``Runtime.event_types``)."""
        return pb.EventType(
            name=self.name,
            property_types=[
                pb.EventType.EventProperty(name=name, type=ptype) for name, ptype in self.properties
            ],
        )


#: A connection finished its upgrade and joined the swarm (``Swarm`` notifee ``connected``).
CONNECTION_OPENED = EventSpec(
    "ConnectionOpened",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("direction", STRING),  # "inbound" | "outbound"
        ("localAddr", MULTIADDR),
        ("remoteAddr", MULTIADDR),
        ("transport", STRING),
        ("multiplexer", STRING),
        ("encryption", STRING),
        ("openTs", TIME),
    ),
)

#: A connection closed (``Swarm`` notifee ``disconnected``); totals are at the raw transport layer.
CONNECTION_CLOSED = EventSpec(
    "ConnectionClosed",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("direction", STRING),
        ("remoteAddr", MULTIADDR),
        ("openTs", TIME),
        ("closeTs", TIME),
        ("bytesIn", NUMBER),
        ("bytesOut", NUMBER),
        # The Connection.status it ends with: "CLOSED" | "ERROR".
        ("status", STRING),
        # ERROR: the transport/security/muxer failure, e.g. "ConnectionResetError: [Errno 104]
        # Connection reset by peer"; CLOSED: "closed locally" | "closed by remote" | "closed".
        ("reason", STRING),
    ),
)

#: A stream's protocol was negotiated (``NetStream.set_protocol``), so it carries the protocol.
STREAM_OPENED = EventSpec(
    "StreamOpened",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("streamId", STRING),
        ("protocol", STRING),
        ("direction", STRING),
        ("openTs", TIME),
    ),
)

#: A stream closed or was reset (``Swarm`` notifee ``closed_stream``, or the muxer's
#: state and hooks for what py-libp2p does not notify); totals are payload bytes.
STREAM_CLOSED = EventSpec(
    "StreamClosed",
    (
        ("peerId", PEERID),
        ("connId", STRING),
        ("streamId", STRING),
        ("protocol", STRING),  # "" when the stream closed before negotiating one
        ("direction", STRING),
        ("openTs", TIME),
        ("closeTs", TIME),
        ("bytesIn", NUMBER),
        ("bytesOut", NUMBER),
        ("status", STRING),  # the Stream.status it ends with: "CLOSED" | "ERROR"
        # CLOSED: "closed"; ERROR: "reset by remote" | "reset locally" | "connection closed" |
        # "connection error" (its connection ended with it open) | "stream error"
        ("reason", STRING),
    ),
)

#: A Kademlia request message from a peer was handled (``result`` "success") or failed ("error").
INBOUND_DHT_QUERY = EventSpec(
    "InboundDHTQuery",
    (
        ("peerId", PEERID),
        ("queryType", STRING),  # FIND_NODE, GET_VALUE, PUT_VALUE, GET_PROVIDERS, ADD_PROVIDER,
        # PING, or UNKNOWN for a request that failed before it could be classified
        ("result", STRING),
    ),
)

#: One Kademlia RPC we sent to a peer finished.
OUTBOUND_DHT_QUERY = EventSpec(
    "OutboundDHTQuery",
    (
        ("peerId", PEERID),
        ("queryType", STRING),
        ("result", STRING),  # "success" | "error" | "timeout" | "cancelled"
        ("durationMs", NUMBER),
    ),
)

CONNECTION_EVENTS: tuple[EventSpec, ...] = (
    CONNECTION_OPENED,
    CONNECTION_CLOSED,
    STREAM_OPENED,
    STREAM_CLOSED,
)
DHT_EVENTS: tuple[EventSpec, ...] = (INBOUND_DHT_QUERY, OUTBOUND_DHT_QUERY)


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


class EventEmitter:
    """Delivers events to the registered sink, synchronously and never raising.

    The sink is called inline from py-libp2p callbacks (notifees, hooks); an
    exception from it or from building the event is logged and swallowed so
    it never reaches libp2p.
    """

    def __init__(self, clock_ms: ClockMs, specs: Sequence[EventSpec]) -> None:
        self._clock_ms = clock_ms
        self._sink: EventSink | None = None
        self.specs: tuple[EventSpec, ...] = tuple(specs)

    @property
    def sink(self) -> EventSink | None:
        """The current sink, or ``None``."""
        return self._sink

    def set_sink(self, sink: EventSink | None) -> None:
        """Register (or with ``None`` remove) the sink."""
        self._sink = sink

    def emit(self, spec: EventSpec, properties: Mapping[str, Any]) -> None:
        """Send one event of type ``spec`` stamped with the clock's now, if a sink is set."""
        sink = self._sink
        if sink is None:
            return
        try:
            event = build_event(spec, self._clock_ms(), properties)
            sink(event)
        except Exception:
            logger.exception("introspection event sink failed for %s", spec.name)
