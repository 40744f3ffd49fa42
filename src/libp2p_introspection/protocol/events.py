"""The event vocabulary every source shares: types, content builders, emission to a sink.

A live host's introspector and the synthetic node emit the same event types
with the same content, built here; nothing in this module knows py-libp2p.

Every event is a ``pb.Event`` whose ``type`` carries the type's name and its
property types, whose ``ts`` is ms since the Unix epoch (the introspector's
clock at emission) and whose ``content`` is a JSON object whose top-level keys
are exactly the declared property names.

Property conventions: ``peerId`` is a base58 peer id (``peerIds`` a list of
them); ``connId``/``streamId`` are the lowercase hex of the
``Connection.id``/``Stream.id`` bytes seen in snapshots; ``*Addr`` are
multiaddr strings; ``*Ts`` are ms since epoch; ``bytes*`` are byte counts;
``totalTimeMs`` is ms.

The DHT query events (``InboundDHTQuery``, ``OutboundDHTQuery``) have the keys
the observer-toolkit UI reads (PROTOCOL.md §3, "Interop rules learned from
existing clients"); :data:`DHT_QUERY_PROPERTIES` says what each one holds.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from libp2p_introspection.protocol import pb
from libp2p_introspection.protocol.clock import ClockMs
from libp2p_introspection.protocol.ids import id_text, transport_text

logger = logging.getLogger(__name__)

#: Called by a source, synchronously and without blocking, once per event as
#: it happens (while the server runs a sampled source, it is the hub's
#: ``SourceOutlet.publish_event``). ``Event.type`` carries at least the type's name; it may carry
#: the property types too (the server then uses them for clients that were not
#: told about that type in the ``Runtime``). ``Event.ts`` is ms since epoch.
EventSink = Callable[[pb.Event], None]

PropertyType = pb.EventType.EventProperty.PropertyType
STRING = pb.EventType.EventProperty.STRING
NUMBER = pb.EventType.EventProperty.NUMBER
TIME = pb.EventType.EventProperty.TIME
PEERID = pb.EventType.EventProperty.PEERID
MULTIADDR = pb.EventType.EventProperty.MULTIADDR
JSON = pb.EventType.EventProperty.JSON


#: One declared property: ``(name, PropertyType)``, or ``(name, PropertyType, has_multiple)``
#: for a property whose value is a JSON list of such values.
Property = tuple[str, int] | tuple[str, int, bool]


@dataclass(frozen=True)
class EventSpec:
    """One event type: its name and its declared properties (:data:`Property`), in order."""

    name: str
    properties: tuple[Property, ...]

    @property
    def property_names(self) -> tuple[str, ...]:
        """The property names, which are the JSON content's keys."""
        return tuple(prop[0] for prop in self.properties)

    def to_pb(self) -> pb.EventType:
        """The ``EventType`` message declaring this type (for ``Runtime.event_types``)."""
        return pb.EventType(
            name=self.name,
            property_types=[
                pb.EventType.EventProperty(
                    name=prop[0], type=prop[1], has_multiple=len(prop) > 2 and bool(prop[2])
                )
                for prop in self.properties
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

#: The content of both DHT query events: one event per Kademlia RPC, sent or answered.
#: ``Event.ts`` is when the request was sent (outbound) or received (inbound).
DHT_QUERY_PROPERTIES: tuple[Property, ...] = (
    ("direction", STRING),  # "INBOUND" | "OUTBOUND"
    # [the remote peer], written exactly as in PeerInDHT.peer_id (base58). Readers accept
    # null entries: the observer-toolkit's own recordings hold some.
    ("peerIds", PEERID, True),
    ("queryId", STRING),  # random hex, one per RPC
    # FIND_NODE: the key looked up as a base58 peer id; other messages: the key in hex
    ("targetPeerId", STRING),
    ("totalTimeMs", NUMBER),  # the RPC's duration, ms
    ("totalSteps", NUMBER),  # always 1: one event is one RPC, not a whole lookup
    # "DISCOVERY": sent by a routing-table refresh (py-libp2p's refresh entry points);
    # "API" otherwise, and for every inbound request (it does not say why it was sent)
    ("trigger", STRING),
    # "VALUE" (GET_VALUE, PUT_VALUE), "PROVIDER" (GET_PROVIDERS, ADD_PROVIDER), "CONTENT" (others)
    ("type", STRING),
    # the py-libp2p message name: FIND_NODE, GET_VALUE, PUT_VALUE, GET_PROVIDERS, ADD_PROVIDER,
    # PING; UNKNOWN for an inbound request that failed before its type could be read
    ("messageType", STRING),
    # "SUCCESS" | "ERROR" | "TIMEOUT" (outbound only); a cancelled RPC emits no event
    ("result", STRING),
)

#: A Kademlia request from a peer was answered (``result`` SUCCESS) or failed (ERROR).
INBOUND_DHT_QUERY = EventSpec("InboundDHTQuery", DHT_QUERY_PROPERTIES)

#: One Kademlia RPC we sent to a peer finished (SUCCESS, ERROR or TIMEOUT).
OUTBOUND_DHT_QUERY = EventSpec("OutboundDHTQuery", DHT_QUERY_PROPERTIES)

#: A peer told us who it is: one event per identify message received from it (its answer
#: to our ``/ipfs/id/1.0.0`` request, or an ``/ipfs/id/push/1.0.0`` it sent), PROTOCOL.md §3.1.
PEER_IDENTIFIED = EventSpec(
    "PeerIdentified",
    (
        ("peerId", PEERID),
        ("agentVersion", STRING),
        ("protocolVersion", STRING),
        ("protocols", STRING, True),  # the protocol ids the peer says it speaks
    ),
)

#: The addresses the node's transports are bound to changed (``NodeInfo.listen_addrs``).
LISTEN_ADDRS_CHANGED = EventSpec(
    "ListenAddrsChanged", (("added", MULTIADDR, True), ("removed", MULTIADDR, True))
)

#: AutoNAT's verdict on the node changed: ``reachability`` is the ``NodeInfo.Reachability``
#: name ("UNKNOWN" | "PUBLIC" | "PRIVATE" | "NOT_RUNNING").
REACHABILITY_CHANGED = EventSpec("ReachabilityChanged", (("reachability", STRING),))

#: The content of both mesh events: ``peerId`` the peer that joined (graft) or left
#: (prune) our mesh of ``topic``; ``direction`` who asked for it.
PUBSUB_MESH_PROPERTIES: tuple[Property, ...] = (
    ("peerId", PEERID),
    ("topic", STRING),
    # "INBOUND": the peer sent the GRAFT/PRUNE; "OUTBOUND": we did
    ("direction", STRING),
)

#: A peer (or this node itself: its own peer id) subscribed to or unsubscribed from a
#: pubsub topic; ``subscribed`` is a JSON boolean, the state after the change.
PUBSUB_SUBSCRIPTION_CHANGED = EventSpec(
    "PubsubSubscriptionChanged", (("peerId", PEERID), ("topic", STRING), ("subscribed", JSON))
)

#: A peer joined our gossipsub mesh of a topic (a GRAFT it sent that we accepted, or
#: one we sent).
PUBSUB_GRAFT = EventSpec("PubsubGraft", PUBSUB_MESH_PROPERTIES)

#: A peer left our gossipsub mesh of a topic (a PRUNE it sent, or one we sent).
PUBSUB_PRUNE = EventSpec("PubsubPrune", PUBSUB_MESH_PROPERTIES)

#: ``direction`` of :data:`PUBSUB_GRAFT` / :data:`PUBSUB_PRUNE`: the peer asked ...
MESH_INBOUND = "INBOUND"
#: ... or we did.
MESH_OUTBOUND = "OUTBOUND"

CONNECTION_EVENTS: tuple[EventSpec, ...] = (
    CONNECTION_OPENED,
    CONNECTION_CLOSED,
    STREAM_OPENED,
    STREAM_CLOSED,
)
DHT_EVENTS: tuple[EventSpec, ...] = (INBOUND_DHT_QUERY, OUTBOUND_DHT_QUERY)
#: What a node says about itself and its peers (identify, listen addresses, AutoNAT).
#: A live host declares ``ReachabilityChanged`` only when it was given an AutoNAT service.
NODE_EVENTS: tuple[EventSpec, ...] = (PEER_IDENTIFIED, LISTEN_ADDRS_CHANGED, REACHABILITY_CHANGED)
PUBSUB_EVENTS: tuple[EventSpec, ...] = (PUBSUB_SUBSCRIPTION_CHANGED, PUBSUB_GRAFT, PUBSUB_PRUNE)

#: The statuses an ended connection or stream has, as the closing events write them.
_ENDED_NAMES = {pb.CLOSED: "CLOSED", pb.ERROR: "ERROR"}


def direction_name(role: int) -> str:
    """``"outbound"`` for ``pb.INITIATOR`` (we dialed / opened it), ``"inbound"`` otherwise:
    the connection and stream events' ``direction``."""
    return "outbound" if role == pb.INITIATOR else "inbound"


def connection_opened(
    *, peer_id: str, conn_id: bytes, role: int, local_addr: str, remote_addr: str,
    transport: bytes, multiplexer: str, encryption: str, open_ts: int,
) -> dict[str, Any]:  # fmt: skip
    """The content of :data:`CONNECTION_OPENED`.

    :param conn_id: ``Connection.id`` bytes (written as lowercase hex, as ``connId``).
    :param role: ``pb.INITIATOR`` | ``pb.RESPONDER``.
    :param transport: ``Connection.transport_id`` (written as :func:`ids.transport_text`).
    :param open_ts: ms since epoch.
    """
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "direction": direction_name(role),
        "localAddr": local_addr,
        "remoteAddr": remote_addr,
        "transport": transport_text(transport),
        "multiplexer": multiplexer,
        "encryption": encryption,
        "openTs": open_ts,
    }


@dataclass(frozen=True, slots=True)
class Ending:
    """How a connection or stream ended: the half both closing events share.

    :param close_ts: ms since epoch.
    :param bytes_in: bytes received over its life (raw transport bytes for a
        connection, payload for a stream); ``bytes_out`` sent.
    :param status: the ``pb.Status`` it ends with, ``pb.CLOSED`` | ``pb.ERROR``.
    :param reason: how, e.g. "closed", "reset by remote", or the failure.
    """

    close_ts: int
    bytes_in: int
    bytes_out: int
    status: int
    reason: str

    def content(self) -> dict[str, Any]:
        """``closeTs``, ``bytesIn``, ``bytesOut``, ``status`` (by name), ``reason``.

        :raises KeyError: if ``status`` is not an ended one.
        """
        return {
            "closeTs": self.close_ts,
            "bytesIn": self.bytes_in,
            "bytesOut": self.bytes_out,
            "status": _ENDED_NAMES[self.status],
            "reason": self.reason,
        }


def connection_closed(
    *, peer_id: str, conn_id: bytes, role: int, remote_addr: str, open_ts: int, ending: Ending
) -> dict[str, Any]:
    """The content of :data:`CONNECTION_CLOSED` (``conn_id`` bytes, ``open_ts`` ms since epoch).

    :raises KeyError: if ``ending.status`` is not an ended one.
    """
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "direction": direction_name(role),
        "remoteAddr": remote_addr,
        "openTs": open_ts,
        **ending.content(),
    }


def stream_opened(
    *, peer_id: str, conn_id: bytes, stream_id: bytes, protocol: str, role: int, open_ts: int
) -> dict[str, Any]:
    """The content of :data:`STREAM_OPENED` (ids as bytes, ``open_ts`` ms since epoch)."""
    return {
        "peerId": peer_id,
        "connId": id_text(conn_id),
        "streamId": id_text(stream_id),
        "protocol": protocol,
        "direction": direction_name(role),
        "openTs": open_ts,
    }


def stream_closed(
    *, peer_id: str, conn_id: bytes, stream_id: bytes, protocol: str, role: int, open_ts: int,
    ending: Ending,
) -> dict[str, Any]:  # fmt: skip
    """The content of :data:`STREAM_CLOSED` (as :func:`stream_opened`, and how it ended).

    :raises KeyError: if ``ending.status`` is not an ended one.
    """
    return {
        **stream_opened(
            peer_id=peer_id, conn_id=conn_id, stream_id=stream_id, protocol=protocol, role=role,
            open_ts=open_ts,
        ),
        **ending.content(),
    }  # fmt: skip


def pubsub_subscription_changed(*, peer_id: str, topic: str, subscribed: bool) -> dict[str, Any]:
    """The content of :data:`PUBSUB_SUBSCRIPTION_CHANGED` (``peer_id`` base58)."""
    return {"peerId": peer_id, "topic": topic, "subscribed": bool(subscribed)}


def pubsub_mesh_change(*, peer_id: str, topic: str, direction: str) -> dict[str, Any]:
    """The content of :data:`PUBSUB_GRAFT` and :data:`PUBSUB_PRUNE` (``peer_id`` base58).

    :param direction: :data:`MESH_INBOUND` | :data:`MESH_OUTBOUND`.
    :raises ValueError: for any other ``direction``.
    """
    if direction not in (MESH_INBOUND, MESH_OUTBOUND):
        raise ValueError(f"mesh change direction must be INBOUND or OUTBOUND, not {direction!r}")
    return {"peerId": peer_id, "topic": topic, "direction": direction}


def peer_identified(
    *, peer_id: str, agent_version: str, protocol_version: str, protocols: Sequence[str]
) -> dict[str, Any]:
    """The content of :data:`PEER_IDENTIFIED` (``peer_id`` base58; the rest as the peer sent it)."""
    return {
        "peerId": peer_id,
        "agentVersion": agent_version,
        "protocolVersion": protocol_version,
        "protocols": list(protocols),
    }


def listen_addrs_changed(*, added: Sequence[str], removed: Sequence[str]) -> dict[str, Any]:
    """The content of :data:`LISTEN_ADDRS_CHANGED` (multiaddr strings, no ``/p2p/`` suffix)."""
    return {"added": list(added), "removed": list(removed)}


def reachability_changed(reachability: int) -> dict[str, Any]:
    """The content of :data:`REACHABILITY_CHANGED` for a ``pb.NodeInfo.Reachability`` value.

    :raises ValueError: if ``reachability`` is not a value of the enum.
    """
    return {"reachability": pb.NodeInfo.Reachability.Name(reachability)}


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
